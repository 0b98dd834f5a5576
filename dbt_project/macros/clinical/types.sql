{#- An 8-byte floating point type. dbt's `type_float()` renders `float`, which DuckDB reads
    as a 4-byte REAL (1.2 becomes 1.2000000476837158); PostgreSQL's `float` is already
    double precision, Spark's `double` is too. -#}
{% macro clinical_double() -%}
    {{ return(adapter.dispatch('clinical_double', 'trialscreen')()) }}
{%- endmacro %}

{% macro default__clinical_double() -%}double precision{%- endmacro %}

{% macro duckdb__clinical_double() -%}double{%- endmacro %}

{% macro spark__clinical_double() -%}double{%- endmacro %}

{#- A limit computed from factors (1.5 x 1.2 = 1.7999999999999998 in binary floating point)
    rounded to `digits` decimals, so a value exactly at the limit is judged at the limit. -#}
{% macro clinical_round(expr, digits=6) -%}
    cast(round(cast({{ expr }} as {{ dbt.type_numeric() }}), {{ digits }}) as {{ clinical_double() }})
{%- endmacro %}
