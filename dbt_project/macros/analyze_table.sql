{#
    Fresh planner statistics for a table dbt just built. PostgreSQL does not analyze a table
    created by `create table as` until autovacuum gets to it, and the next model's joins are
    then planned blind (nested loops over millions of rows: screening_results ran for more
    than 20 minutes at 100,000 patients). DuckDB and Spark need nothing.
#}
{% macro analyze_table() -%}
    {{ return(adapter.dispatch('analyze_table', 'trialscreen')()) }}
{%- endmacro %}

{% macro default__analyze_table() -%}
{%- endmacro %}

{% macro postgres__analyze_table() -%}
    {%- if model.config.materialized in ('table', 'incremental') -%}
        analyze {{ this }}
    {%- endif -%}
{%- endmacro %}

{#
    Hash joins, not nested loops, for the models PostgreSQL builds (a pre-hook, `set local`:
    the model's transaction only). Statistics cannot help where the planner estimates the
    rows of a filtered CTE or a ranked subquery (`evidence_rank = 1`): it guesses one row and
    joins millions of rows to it in a nested loop with a join filter. At 100,000 patients
    int_criteria__diagnosis ran 18 minutes that way (18 s with hash joins) and
    int_observations over 19 minutes, nested loops of 2 M observations against the LOINC and
    local-code seeds (docs/decisions.md "PostgreSQL builds with hash joins"). With the setting
    off, a nested loop is still used where nothing else can run (a join with no equality).
#}
{% macro planner_settings() -%}
    {{ return(adapter.dispatch('planner_settings', 'trialscreen')()) }}
{%- endmacro %}

{% macro default__planner_settings() -%}
{%- endmacro %}

{% macro postgres__planner_settings() -%}
    {%- if model.config.materialized in ('table', 'incremental') -%}
        set local enable_nestloop = off
    {%- endif -%}
{%- endmacro %}
