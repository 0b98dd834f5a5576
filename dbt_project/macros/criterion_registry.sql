{#
    The registry of criterion rule types (dbt_project.yml, var `criterion_rules`: rule -> model;
    docs/adding_a_rule.md).

    criterion_models(): the distinct int_criteria__* models, in registry order.
    criterion_rules(): the rule names the registry knows (for accepted_values).
    valid_until(evidence_date, window_days): the last screening date on which evidence of that
        local date still falls in a window of that many days (windows are inclusive at both
        ends: docs/clinical-rules.md#windows); null when either is null.
#}
{% macro criterion_models() -%}
    {%- set models = [] -%}
    {%- for rule, model in var('criterion_rules').items() -%}
        {%- if model not in models -%}{%- do models.append(model) -%}{%- endif -%}
    {%- endfor -%}
    {{ return(models) }}
{%- endmacro %}

{% macro criterion_rules() -%}
    {{ return(var('criterion_rules').keys() | list) }}
{%- endmacro %}

{% macro valid_until(evidence_date, window_days) -%}
    {{ return(adapter.dispatch('valid_until', 'trialscreen')(evidence_date, window_days)) }}
{%- endmacro %}

{% macro default__valid_until(evidence_date, window_days) -%}
    cast({{ dbt.dateadd('day', window_days, evidence_date) }} as date)
{%- endmacro %}

{# dbt-spark's dateadd asserts its date is not null; a missing input must give null here #}
{% macro spark__valid_until(evidence_date, window_days) -%}
    date_add(cast({{ evidence_date }} as date), cast({{ window_days }} as int))
{%- endmacro %}
