{#
    Clinical formulas, written once (docs/style.md#clinical-formulas).
    Every argument is a SQL expression. Results are floating point; callers round for
    display only. Unit tests: models/intermediate/normalized/int_formulas__worked_examples.yml.
#}

{#- Cockcroft-Gault creatinine clearance, mL/min (NOT normalized to 1.73 m2).
    CrCl = (140 - age) x weight[kg] / (72 x SCr[mg/dL]), x 0.85 if female.
    Source: Cockcroft DW, Gault MH. Nephron 1976;16(1):31-41, doi:10.1159/000180580.
    is_female: a boolean SQL expression; null -> null (callers compute both sexes when the
    sex is neither male nor female). SCr <= 0 -> null. -#}
{% macro cockcroft_gault(age, weight_kg, scr_mg_dl, is_female) -%}
    (
        (140 - cast({{ age }} as {{ type_double() }}))
        * cast({{ weight_kg }} as {{ type_double() }})
        / (72 * cast(case when {{ scr_mg_dl }} > 0 then {{ scr_mg_dl }} end as {{ type_double() }}))
        * case when {{ is_female }} then 0.85 when not ({{ is_female }}) then 1.0 end
    )
{%- endmacro %}

{#- Body surface area by Mosteller, m2: sqrt(height[cm] x weight[kg] / 3600).
    Source: Mosteller RD, N Engl J Med 1987;317(17):1098; test vector 80 kg / 180 cm -> 2.000
    (InsightRX/clinPK tests/testthat/test_calc_bsa.R). -#}
{% macro bsa_mosteller(height_cm, weight_kg) -%}
    sqrt(
        cast(case when {{ height_cm }} > 0 then {{ height_cm }} end as {{ type_double() }})
        * cast(case when {{ weight_kg }} > 0 then {{ weight_kg }} end as {{ type_double() }})
        / 3600
    )
{%- endmacro %}

{#- Creatinine clearance normalized to 1.73 m2: CrCl x 1.73 / BSA
    (docs/clinical-rules.md#cockcroft-gault). -#}
{% macro crcl_normalized(crcl, bsa) -%}
    (
        cast({{ crcl }} as {{ type_double() }}) * 1.73
        / cast(case when {{ bsa }} > 0 then {{ bsa }} end as {{ type_double() }})
    )
{%- endmacro %}

{#- A value as a multiple of the upper limit of normal; null when the ULN is missing or <= 0. -#}
{% macro x_uln(value, uln) -%}
    (
        cast({{ value }} as {{ type_double() }})
        / cast(case when {{ uln }} > 0 then {{ uln }} end as {{ type_double() }})
    )
{%- endmacro %}

{#- Age in whole years on a date; the birthday itself counts (born 2014-11-02 -> 12 on
    2026-11-02). A 29 February birthday is reached on 1 March in common years. -#}
{% macro age_in_years(birth_date, on_date) -%}
    (
        extract(year from {{ on_date }}) - extract(year from {{ birth_date }})
        - case
            when extract(month from {{ on_date }}) < extract(month from {{ birth_date }})
                then 1
            when extract(month from {{ on_date }}) = extract(month from {{ birth_date }})
                and extract(day from {{ on_date }}) < extract(day from {{ birth_date }})
                then 1
            else 0
        end
    )
{%- endmacro %}

{#- Convert a value to the canonical unit with the factors of seed `unit_conversions`:
    value x multiply_by / divide_by, or 10^value for log10 results (transform 'pow10').
    The caller joins the seed (conversion is data); this macro only applies the row. -#}
{% macro convert_to_canonical(value, multiply_by, divide_by, transform) -%}
    case
        when {{ value }} is null then null
        when {{ transform }} = 'pow10'
            then power(10.0, cast({{ value }} as {{ type_double() }}))
        else cast({{ value }} as {{ type_double() }}) * {{ multiply_by }} / {{ divide_by }}
    end
{%- endmacro %}
