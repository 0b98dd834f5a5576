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

{#
    instant_utc(wall, offset_min, tz): the instant, as a naive UTC timestamp, of a raw
    timestamp kept as sent (docs/decisions.md, "Timestamps as sent" and "Local time"):
    `wall` is the sender's wall clock, `offset_min` the UTC offset it sent (minutes east of
    UTC, null when none). With an offset: wall - offset. Without: the wall clock taken in
    the hospital time zone `tz` (var('timezone'), an IANA name). The raw tables keep both
    halves, so a corrected zone setting is re-applied by rebuilding, never re-ingesting.
    Every engine here does this offline: DuckDB's ICU extension is statically linked in the
    Python wheel (duckdb_extensions() says STATICALLY_LINKED), PostgreSQL has its tz
    database, Spark uses the JVM's.
    At a daylight-saving gap or overlap the engine's own rule places a wall clock sent
    without an offset (DuckDB/ICU and PostgreSQL: the standard-time reading of an
    ambiguous or skipped time).
#}
{% macro instant_utc(wall, offset_min, tz=none) -%}
    {%- set tz_name = ((tz if tz is not none else var('timezone', 'UTC')) | string | trim) -%}
    {%- if not modules.re.match('^[A-Za-z0-9_+/-]+$', tz_name) -%}
        {{ exceptions.raise_compiler_error("var 'timezone' is not an IANA time zone name") }}
    {%- endif -%}
    case
        when {{ offset_min }} is not null
            then {{ adapter.dispatch('minus_minutes', 'trialscreen')(wall, offset_min) }}
        else {{ local_wall_to_utc(wall, tz_name) }}
    end
{%- endmacro %}

{% macro local_wall_to_utc(wall, tz_name) -%}
    {%- if tz_name | upper in ('UTC', 'ETC/UTC', 'Z', 'GMT') -%}
        cast({{ wall }} as {{ dbt.type_timestamp() }})
    {%- else -%}
        {{ return(adapter.dispatch('local_wall_to_utc', 'trialscreen')(wall, tz_name)) }}
    {%- endif -%}
{%- endmacro %}

{# DuckDB (ICU) and PostgreSQL: naive wall -> timestamptz in tz -> naive UTC wall clock. #}
{% macro default__local_wall_to_utc(wall, tz_name) -%}
    cast((({{ wall }}) at time zone '{{ tz_name }}') at time zone 'UTC' as {{ dbt.type_timestamp() }})
{%- endmacro %}

{% macro spark__local_wall_to_utc(wall, tz_name) -%}
    to_utc_timestamp({{ wall }}, '{{ tz_name }}')
{%- endmacro %}

{% macro default__minus_minutes(wall, minutes) -%}
    cast({{ wall }} as {{ dbt.type_timestamp() }}) - cast({{ minutes }} as integer) * interval '1 minute'
{%- endmacro %}

{% macro spark__minus_minutes(wall, minutes) -%}
    timestampadd(MINUTE, -cast({{ minutes }} as int), {{ wall }})
{%- endmacro %}

{# A naive-UTC timestamp printed as its local date in the hospital zone (reasons use the
   same local date as the windows). #}
{% macro fmt_local_date(ts) -%}
    {{ fmt_date(date_in_timezone(ts, timezone_name())) }}
{%- endmacro %}
