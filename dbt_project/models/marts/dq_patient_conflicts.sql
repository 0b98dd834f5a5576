-- Data quality: patients whose feeds send different values of a demographic field (docs/
-- decisions.md "Demographics merged field by field"), one row per patient and field. Never
-- resolved silently: while feeds disagree the field is treated as unknown (age unknown, the
-- reason naming the feeds). Analyst-safe: the patient by pseudonym, how many distinct values
-- and which feeds sent one - never the values.
with

patients as (

    select * from {{ ref('int_patients') }}

),

conflicts as (

    select
        patient_key,
        'birth_date' as field,
        birth_date_values as value_count,
        birth_date_sources as feeds
    from patients
    where birth_date_conflict
    union all
    select
        patient_key,
        'sex' as field,
        sex_values as value_count,
        sex_sources as feeds
    from patients
    where sex_conflict

)

select
    {{ run_id() }} as run_id,
    patient_key,
    field,
    value_count,
    feeds
from conflicts
