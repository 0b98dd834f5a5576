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
