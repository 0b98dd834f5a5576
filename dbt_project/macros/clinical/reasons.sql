{#
    Text for the human reasons of criterion_evaluations (docs/clinical-rules.md#evidence-and-reason:
    "ANC 0.8 ×10⁹/L on 2026-11-02 < 1.0"). Cross-database: casts and `||` only.
#}

{#- A number as short text: whole numbers without decimals ('12', '100'), others rounded to
    `digits` decimals ('0.8', '1.35'). -#}
{% macro fmt_num(expr, digits=2) -%}
    case
        when round(cast({{ expr }} as {{ dbt.type_numeric() }}), {{ digits }})
            = round(cast({{ expr }} as {{ dbt.type_numeric() }}), 0)
            then cast(cast(round(cast({{ expr }} as {{ dbt.type_numeric() }}), 0) as {{ dbt.type_bigint() }}) as {{ dbt.type_string() }})
        else cast(cast(round(cast({{ expr }} as {{ dbt.type_numeric() }}), {{ digits }}) as {{ clinical_double() }}) as {{ dbt.type_string() }})
    end
{%- endmacro %}

{% macro fmt_date(expr) -%}
    cast(cast({{ expr }} as date) as {{ dbt.type_string() }})
{%- endmacro %}

{#- UCUM canonical units as a person reads them; anything else is shown as sent. -#}
{% macro unit_display(unit) -%}
    case {{ unit }}
        when '10*9/L' then '×10⁹/L'
        when '10*3/uL' then '×10³/µL'
        when '{copies}/mL' then 'copies/mL'
        when 'mL/min/{1.73_m2}' then 'mL/min/1.73 m²'
        else coalesce({{ unit }}, '')
    end
{%- endmacro %}

{#- The comparator prefix of a result ('<', '>=' ...) or ''. -#}
{% macro comparator_prefix(comparator) -%}
    coalesce({{ comparator }}, '')
{%- endmacro %}
