-- Completeness (docs/adding_a_rule.md): every (screened patient, trial, cohort, criterion of the
-- definition) has exactly one row in marts.criterion_evaluations. A criterion whose rule model
-- is missing from the union (or decides no row for a patient) would otherwise vanish, and the
-- patient could come out ready_for_review with that criterion never decided. Returns the
-- offending keys: missing (n_evaluations 0), duplicated (> 1) or not in the definition.
with

criteria as (

    select * from {{ ref('stg_config__trial_criteria') }}

),

population as (

    select * from {{ ref('int_screening__population') }}

),

evaluations as (

    select * from {{ ref('criterion_evaluations') }}

),

expected as (

    select
        criteria.trial_id,
        criteria.cohort_id,
        criteria.criterion_id,
        population.patient_key
    from criteria
    inner join population
        on criteria.trial_id = population.trial_id

),

actual as (

    select
        trial_id,
        cohort_id,
        criterion_id,
        patient_key,
        count(*) as n_evaluations
    from evaluations
    group by trial_id, cohort_id, criterion_id, patient_key

)

select
    coalesce(expected.trial_id, actual.trial_id) as trial_id,
    coalesce(expected.cohort_id, actual.cohort_id) as cohort_id,
    coalesce(expected.criterion_id, actual.criterion_id) as criterion_id,
    coalesce(actual.n_evaluations, 0) as n_evaluations,
    expected.trial_id is not null as in_definition
from expected
full outer join actual
    on expected.trial_id = actual.trial_id
    and expected.cohort_id = actual.cohort_id
    and expected.criterion_id = actual.criterion_id
    and expected.patient_key = actual.patient_key
where expected.trial_id is null
    or actual.n_evaluations is null
    or actual.n_evaluations <> 1
