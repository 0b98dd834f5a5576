{#
    Incremental nights (issue 14, docs/decisions.md "Incremental nights").

    The row-level normalized models (int_observations, int_conditions, int_medications) are
    `incremental` on the raw load id, at patient granularity: a night recomputes, from all of
    staging, every patient a load newer than `var('incremental_after_load_id')` can have
    changed (int_changed_patients), deletes those patients' rows and inserts them again. Every
    other patient's rows stay as built. The rows of a patient depend only on raw (append-only)
    and the reference seeds, never on the screening date, so the state is the same function of
    raw whether it was built in one night or in many, and a night whose gate blocks leaves a
    state the next night continues from unchanged.

    `trialscreen run` and the DAG pass the variable (trialscreen.pipeline.plan_build: the load
    id the last successful build covered) unless they rebuild (`--full-refresh`, or a changed
    fingerprint: trial definitions, seeds, dbt project, code version, time zone). Without the
    variable (a developer's `dbt build`) an existing table is rebuilt whole. On Spark
    (Parquet tables, no row deletes) the models are plain tables, rebuilt every night.
#}

{#- The load id the incremental tables already cover, or none (rebuild everything). -#}
{% macro incremental_after_load_id() -%}
    {%- set value = var('incremental_after_load_id', none) -%}
    {%- if value is none or value == '' -%}
        {{ return(none) }}
    {%- endif -%}
    {%- if value is string and not value.isdigit() -%}
        {{ exceptions.raise_compiler_error("var incremental_after_load_id must be a load id (an integer >= 0), got '" ~ value ~ "'") }}
    {%- endif -%}
    {{ return(value | int) }}
{%- endmacro %}

{#- The materialization of the incremental models: `incremental`, except on Spark. -#}
{% macro incremental_materialization() -%}
    {{ return('table' if target.type == 'spark' else 'incremental') }}
{%- endmacro %}

{#- False on an incremental night when no raw table has a row of a load newer than
    `var('incremental_after_load_id')` (trialscreen.pipeline.plan_build reads the raw tables'
    load ids and passes `incremental_new_loads: false`): no patient can have changed, and the
    models say so as constants the database folds away instead of reading all of staging to
    find an empty set (docs/decisions.md, "A night with nothing new"). -#}
{% macro incremental_has_new_loads() -%}
    {{ return(var('incremental_new_loads', true) not in [false, 'false', 'False']) }}
{%- endmacro %}

{#- True when this build updates an existing table for the changed patients only. -#}
{% macro is_incremental_night() -%}
    {{ return(is_incremental() and incremental_after_load_id() is not none) }}
{%- endmacro %}

{#- Pre-hook of the incremental models: the rows of every changed patient go (they are
    inserted again, recomputed, by the model's own insert in the same transaction; a patient
    whose last row was retracted or merged away keeps none). Without the variable, all rows
    go: the table is rebuilt whole. -#}
{% macro incremental_delete_changed() -%}
    {%- if is_incremental() and incremental_after_load_id() is none -%}
        delete from {{ this }}
    {%- elif is_incremental() and incremental_has_new_loads() -%}
        delete from {{ this }}
        where patient_mrn in (select changed.patient_mrn from {{ ref('int_changed_patients') }} as changed)
    {%- endif -%}
{%- endmacro %}

{#- `and <condition>` restricting `<alias>.patient_mrn` to the changed patients on an
    incremental night (none when nothing new was loaded: a constant false); nothing
    otherwise. -#}
{% macro changed_patients_filter(alias) -%}
    {%- if is_incremental_night() and not incremental_has_new_loads() %}
        and 1 = 0
    {%- elif is_incremental_night() %}
        and {{ alias }}.patient_mrn in (
            select changed.patient_mrn from {{ ref('int_changed_patients') }} as changed
        )
    {%- endif -%}
{%- endmacro %}

{#- The relation a data test reads (dbt's `where` config, overridden here): a test whose meta
    says `new_loads_only` reads, on an incremental night, only the rows of the loads since the
    last successful build (`load_id > var('incremental_after_load_id')`), and everything on a
    full build. Decided when the test compiles, not when the project is parsed, so the night's
    variable is read like screening_date: one parse serves every night (trialscreen.transform
    RUN_VARS). A test's own `where` applies as dbt's does. -#}
{% macro get_where_subquery(relation) -%}
    {%- set conditions = [] -%}
    {%- if config.get('where') -%}
        {%- do conditions.append('(' ~ config.get('where') ~ ')') -%}
    {%- endif -%}
    {%- set after = incremental_after_load_id() -%}
    {%- if (config.get('meta') or {}).get('new_loads_only') and after is not none -%}
        {%- do conditions.append('load_id > ' ~ after) -%}
    {%- endif -%}
    {%- if conditions -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ conditions | join(' and ') }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}
