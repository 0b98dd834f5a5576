-- The formula macros reproduce every expected value carried by seed formula_examples
-- (published test vectors), to 0.01. Returns the examples that do not.
select
    examples.example_id,
    examples.expected_crcl_ml_min,
    worked.crcl_ml_min,
    examples.expected_crcl_ml_min_1_73m2,
    worked.crcl_ml_min_1_73m2,
    examples.expected_age_years,
    worked.age_on_date,
    examples.expected_x_uln,
    worked.result_x_uln
from {{ ref('formula_examples') }} as examples
inner join {{ ref('int_formulas__worked_examples') }} as worked
    on examples.example_id = worked.example_id
where abs(examples.expected_crcl_ml_min - worked.crcl_ml_min) > 0.01
    or (examples.expected_crcl_ml_min_1_73m2 is not null
        and abs(examples.expected_crcl_ml_min_1_73m2 - worked.crcl_ml_min_1_73m2) > 0.01)
    or (examples.expected_age_years is not null
        and examples.expected_age_years <> worked.age_on_date)
    or (examples.expected_x_uln is not null
        and abs(examples.expected_x_uln - worked.result_x_uln) > 0.01)
