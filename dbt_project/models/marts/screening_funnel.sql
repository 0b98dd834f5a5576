-- Attrition per trial and cohort (docs/specification.md#screening-funnel): criteria in definition
-- order; at each step the patients still in (no not_met among this and the earlier criteria), those
-- this criterion removes, and the status counts of the criterion itself. unknown and review never
-- remove a patient (docs/specification.md#criterion-statuses).
with

evaluations as (

    select * from {{ ref('criterion_evaluations') }}

),

criteria as (

    select * from {{ ref('stg_config__trial_criteria') }}

),

ordered as (

    -- only the columns the steps read: PostgreSQL materializes a CTE read twice, and with
    -- every column of the evaluations (their reasons) that was three times the temporary
    -- files at 100,000 patients (docs/benchmarks.md, "PostgreSQL: the funnel's two reads")
    select
        evaluations.run_id,
        evaluations.screening_date,
        evaluations.trial_id,
        evaluations.cohort_id,
        evaluations.patient_key,
        evaluations.criterion_id,
        evaluations.status,
        criteria.ordinal
    from evaluations
    inner join criteria
        on evaluations.trial_id = criteria.trial_id
        and evaluations.cohort_id = criteria.cohort_id
        and evaluations.criterion_id = criteria.criterion_id

),

first_failure as (

    -- the first criterion (in order) each patient does not meet
    select
        trial_id,
        cohort_id,
        patient_key,
        min(case when status = 'not_met' then ordinal end) as first_not_met_ordinal
    from ordered
    group by trial_id, cohort_id, patient_key

),

steps as (

    select
        ordered.run_id,
        ordered.screening_date,
        ordered.trial_id,
        ordered.cohort_id,
        ordered.ordinal,
        ordered.criterion_id,
        count(*) as patients_screened,
        sum(case when ordered.status = 'met' then 1 else 0 end) as n_met,
        sum(case when ordered.status = 'not_met' then 1 else 0 end) as n_not_met,
        sum(case when ordered.status = 'unknown' then 1 else 0 end) as n_unknown,
        sum(case when ordered.status = 'review' then 1 else 0 end) as n_review,
        sum(case when first_failure.first_not_met_ordinal = ordered.ordinal then 1 else 0 end)
            as patients_removed,
        sum(case
            when first_failure.first_not_met_ordinal is null
                or first_failure.first_not_met_ordinal > ordered.ordinal then 1
            else 0
        end) as patients_remaining
    from ordered
    inner join first_failure
        on ordered.trial_id = first_failure.trial_id
        and ordered.cohort_id = first_failure.cohort_id
        and ordered.patient_key = first_failure.patient_key
    group by
        ordered.run_id, ordered.screening_date, ordered.trial_id, ordered.cohort_id,
        ordered.ordinal, ordered.criterion_id

)

select * from steps
