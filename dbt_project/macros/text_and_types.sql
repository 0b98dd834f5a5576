{#- Whitespace-trimmed text with empty strings as null. -#}
{% macro clean_text(column) -%}
    nullif(trim({{ column }}), '')
{%- endmacro %}

{#- Lowercased, trimmed text with empty strings as null (vocabularies: statuses, systems). -#}
{% macro clean_lower(column) -%}
    nullif(lower(trim({{ column }})), '')
{%- endmacro %}

{#- Normalized code for a normalized code system: ICD-10-CM and ATC uppercase without dots or
    spaces (`C78.7` = `C787`); ICD-O-3 without spaces (`9581/3`); others trimmed. -#}
{% macro normalize_code(code, code_system) -%}
    case
        when {{ code_system }} in ('icd10cm', 'icd10', 'atc')
            then nullif(upper(replace(replace(trim({{ code }}), '.', ''), ' ', '')), '')
        when {{ code_system }} = 'icdo3'
            then nullif(replace(trim({{ code }}), ' ', ''), '')
        else nullif(trim({{ code }}), '')
    end
{%- endmacro %}

{#- 64-bit floating point on every engine. type_double() renders `float`, which is a
    32-bit REAL on DuckDB (1.2 -> 1.2000000476837158): use this for clinical values. -#}
{% macro type_double() -%}
    {{ return(adapter.dispatch('type_double', 'trialscreen')()) }}
{%- endmacro %}

{% macro default__type_double() -%}
    double precision
{%- endmacro %}

{% macro duckdb__type_double() -%}
    double
{%- endmacro %}

{% macro spark__type_double() -%}
    double
{%- endmacro %}
