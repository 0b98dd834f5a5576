{#
    Regular expressions on every engine (DuckDB RE2, PostgreSQL ARE, Spark Java regex). The
    patterns the project writes use only what the three share: anchors, bracket classes with
    literal characters ([0-9], [.], [ ]), greedy quantifiers, {m,n}, alternation and (?:...)
    groups. No backslashes: Spark string literals would swallow them. Patterns are text
    values, never built from data.
#}

{#- Capture group `group` of the first match of `pattern` in `expr`; null when there is no
    match (or the group matched the empty string). -#}
{% macro regex_group(expr, pattern, group) -%}
    {{ return(adapter.dispatch('regex_group', 'trialscreen')(expr, pattern, group)) }}
{%- endmacro %}

{% macro default__regex_group(expr, pattern, group) -%}
    nullif((regexp_match({{ expr }}, '{{ pattern }}'))[{{ group }}], '')
{%- endmacro %}

{% macro duckdb__regex_group(expr, pattern, group) -%}
    nullif(regexp_extract({{ expr }}, '{{ pattern }}', {{ group }}), '')
{%- endmacro %}

{% macro spark__regex_group(expr, pattern, group) -%}
    nullif(regexp_extract({{ expr }}, '{{ pattern }}', {{ group }}), '')
{%- endmacro %}

{#- Every match of `pattern` in `expr` replaced by the literal `replacement`. -#}
{% macro regex_replace_all(expr, pattern, replacement) -%}
    {{ return(adapter.dispatch('regex_replace_all', 'trialscreen')(expr, pattern, replacement)) }}
{%- endmacro %}

{% macro default__regex_replace_all(expr, pattern, replacement) -%}
    regexp_replace({{ expr }}, '{{ pattern }}', '{{ replacement }}', 'g')
{%- endmacro %}

{% macro spark__regex_replace_all(expr, pattern, replacement) -%}
    regexp_replace({{ expr }}, '{{ pattern }}', '{{ replacement }}')
{%- endmacro %}
