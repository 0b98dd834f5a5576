{#
    Run-time variables as SQL literals.

    screening_date(): the as-of date of the run, `cast('YYYY-MM-DD' as date)`. It is required
    whenever a model that uses it executes; parsing and compiling without it are allowed
    (a placeholder is rendered) so `dbt parse` / `dbt ls` work without run arguments.
#}
{% macro screening_date() -%}
    {%- set value = var('screening_date', none) -%}
    {%- if value is none or (value | string | trim) == '' -%}
        {%- if execute and flags.WHICH in ('run', 'build', 'test', 'show') -%}
            {{ exceptions.raise_compiler_error(
                "var 'screening_date' is required: pass --vars '{screening_date: YYYY-MM-DD}'"
            ) }}
        {%- endif -%}
        cast(null as date)
    {%- else -%}
        cast('{{ value | string | trim }}' as date)
    {%- endif -%}
{%- endmacro %}

{% macro run_id() -%}
    '{{ var("run_id", "manual") | string | replace("'", "''") }}'
{%- endmacro %}

{% macro timezone_name() -%}
    {{- var('timezone', 'UTC') | string | trim -}}
{%- endmacro %}
