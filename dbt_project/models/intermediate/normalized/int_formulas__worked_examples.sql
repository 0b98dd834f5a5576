-- int_formulas__worked_examples: the clinical formula macros (macros/formulas.sql,
-- macros/timezones.sql) applied to the worked examples of seed formula_examples. It exists
-- so the formulas have a model to unit-test (dbt unit tests need one) and so a reader can see
-- each formula next to published expected values. Nothing downstream reads it.

with

examples as (

    select * from {{ ref('formula_examples') }}

),

creatinine_conversions as (

    select * from {{ ref('unit_conversions') }}
    where analyte = 'creatinine'

),

inputs as (

    select
        examples.example_id,
        examples.sex,
        examples.age_years,
        examples.weight_kg,
        examples.height_cm,
        -- serum creatinine in mg/dL (conversion factors are data: seed unit_conversions)
        case
            when examples.scr_unit = 'mg/dL' then cast(examples.scr_value as {{ type_double() }})
            else {{ convert_to_canonical(
                'examples.scr_value', 'creatinine_conversions.multiply_by',
                'creatinine_conversions.divide_by', 'creatinine_conversions.transform') }}
        end as scr_mg_dl,
        examples.birth_date,
        examples.on_date,
        examples.result_value,
        examples.result_uln
    from examples
    left join creatinine_conversions
        on examples.scr_unit = creatinine_conversions.from_ucum

),

formulas as (

    select
        inputs.*,
        {{ cockcroft_gault('age_years', 'weight_kg', 'scr_mg_dl', "sex = 'F'") }} as crcl_ml_min,
        {{ bsa_mosteller('height_cm', 'weight_kg') }} as bsa_m2,
        {{ age_in_years('birth_date', 'on_date') }} as age_on_date,
        {{ x_uln('result_value', 'result_uln') }} as result_x_uln
    from inputs

),

final as (

    select
        example_id,
        scr_mg_dl,
        crcl_ml_min,
        bsa_m2,
        {{ crcl_normalized('crcl_ml_min', 'bsa_m2') }} as crcl_ml_min_1_73m2,
        cast(age_on_date as {{ dbt.type_int() }}) as age_on_date,
        result_x_uln,
        -- rounded for comparison with the published 2-decimal values
        round(cast(crcl_ml_min as {{ dbt.type_numeric() }}), 2) as crcl_ml_min_2dp,
        round(cast({{ crcl_normalized('crcl_ml_min', 'bsa_m2') }} as {{ dbt.type_numeric() }}), 2)
            as crcl_ml_min_1_73m2_2dp,
        round(cast(bsa_m2 as {{ dbt.type_numeric() }}), 3) as bsa_m2_3dp,
        round(cast(result_x_uln as {{ dbt.type_numeric() }}), 2) as result_x_uln_2dp
    from formulas

)

select * from final
