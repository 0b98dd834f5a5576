{#
    date_in_timezone(ts, tz): the local calendar date, in time zone `tz` (an IANA name given
    as a Jinja string, e.g. var('timezone')), of `ts`, a naive timestamp holding UTC
    (the raw-table convention, include/trialscreen/schema.py).
    With tz 'UTC' no time-zone arithmetic is needed (and DuckDB's ICU extension is not).
#}
{% macro date_in_timezone(ts, tz='UTC') -%}
    {%- set tz_name = (tz | string | trim) -%}
    {%- if tz_name | upper in ('UTC', 'ETC/UTC', 'Z', 'GMT') -%}
        cast({{ ts }} as date)
    {%- else -%}
        {{ return(adapter.dispatch('date_in_timezone', 'trialscreen')(ts, tz_name)) }}
    {%- endif -%}
{%- endmacro %}

{# DuckDB (ICU) and PostgreSQL: naive -> timestamptz at UTC -> naive local wall clock. #}
{% macro default__date_in_timezone(ts, tz_name) -%}
    cast((({{ ts }}) at time zone 'UTC') at time zone '{{ tz_name }}' as date)
{%- endmacro %}

{% macro spark__date_in_timezone(ts, tz_name) -%}
    to_date(from_utc_timestamp({{ ts }}, '{{ tz_name }}'))
{%- endmacro %}
