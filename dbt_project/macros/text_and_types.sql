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
            -- morphology in its real spellings: 9581/3, 95813, M9581/3, M-95813 -> 9581/3
            then {{ normalize_icdo3(code) }}
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

{#- A double as text the way DuckDB writes it (`3000.0`, `2.5`, `-3.0`), on every engine, so
    that reasons quoting a raw value are identical across warehouses. PostgreSQL drops the
    `.0` of an integral float8 (`3000`): add it back below 1e16, where DuckDB stops writing
    integral doubles in full. -#}
{% macro double_text(expr) -%}
    {{ return(adapter.dispatch('double_text', 'trialscreen')(expr)) }}
{%- endmacro %}

{% macro default__double_text(expr) -%}
    case
        when {{ expr }} = trunc({{ expr }}) and abs({{ expr }}) < 1e16
            then cast(cast({{ expr }} as {{ dbt.type_bigint() }}) as {{ dbt.type_string() }}) || '.0'
        else cast({{ expr }} as {{ dbt.type_string() }})
    end
{%- endmacro %}

{% macro duckdb__double_text(expr) -%}
    cast({{ expr }} as {{ dbt.type_string() }})
{%- endmacro %}

{% macro spark__double_text(expr) -%}
    cast({{ expr }} as {{ dbt.type_string() }})
{%- endmacro %}


{#- ICD-O-3 morphology spellings (9581/3, 95813, M9581/3, M-95813, m 9581/3) as NNNN/B:
    spaces and dashes dropped, a leading M dropped, a slash put before a fifth digit. -#}
{% macro normalize_icdo3(code) -%}
    {%- set bare = "replace(replace(upper(trim(" ~ code ~ ")), ' ', ''), '-', '')" -%}
    {%- set digits = "case when substr(" ~ bare ~ ", 1, 1) = 'M' then substr(" ~ bare ~ ", 2) else " ~ bare ~ " end" -%}
    nullif(
        case
            when length({{ digits }}) = 5 and {{ digits }} not like '%/%'
                then substr({{ digits }}, 1, 4) || '/' || substr({{ digits }}, 5, 1)
            else {{ digits }}
        end,
        ''
    )
{%- endmacro %}


{#- An ICD-10 code as people write it (C787 -> C78.7, B20 stays): a letter, two digits, then a
    dot before the rest. Other codes (SNOMED, ICD-O-3 NNNN/B, ATC, RxNorm) unchanged. -#}
{% macro display_code(code) -%}
    case
        when upper(substr({{ code }}, 1, 1)) between 'A' and 'Z'
            and substr({{ code }}, 2, 1) between '0' and '9'
            and substr({{ code }}, 3, 1) between '0' and '9'
            and length({{ code }}) > 3
            and length({{ code }}) <= 8
            and {{ code }} not like '%.%'
            and {{ code }} not like '%/%'
            and upper(substr({{ code }}, 1, 1)) <> 'L'
            and upper(substr({{ code }}, 1, 1)) <> 'J'
            then substr({{ code }}, 1, 3) || '.' || substr({{ code }}, 4)
        else {{ code }}
    end
{%- endmacro %}
