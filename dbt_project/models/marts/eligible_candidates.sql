-- The rows of screening_results a coordinator works through
-- (docs/specification.md#eligible-candidates): candidate_status
-- ready_for_review or missing_data, plus
--   first_eligible_on: the earliest screening date (up to this run's) on which the patient
--     was a candidate for the trial and cohort, per screening_candidate_history;
--   is_new: not a candidate in the previous run (int_screening__previous_candidates: the most
--     recent other run_id of the published history with a screening date on or before this
--     run's, latest recorded wins on ties). True on the first run ever.
with

results as (

    select * from {{ ref('screening_results') }}

),

history as (

    select * from {{ ref('screening_candidate_history') }}

),

previous_candidates as (

    select * from {{ ref('int_screening__previous_candidates') }}

),

current_run as (

    select distinct
        run_id,
        screening_date
    from results

),

first_eligible as (

    select
        history.trial_id,
        history.cohort_id,
        history.patient_key,
        min(history.screening_date) as first_eligible_on
    from history
    inner join current_run
        on history.screening_date <= current_run.screening_date
    where history.is_candidate
    group by history.trial_id, history.cohort_id, history.patient_key

)

select
    results.*,
    coalesce(first_eligible.first_eligible_on, results.screening_date) as first_eligible_on,
    previous_candidates.patient_key is null as is_new

from results
left join first_eligible
    on results.trial_id = first_eligible.trial_id
    and results.cohort_id = first_eligible.cohort_id
    and results.patient_key = first_eligible.patient_key
left join previous_candidates
    on results.trial_id = previous_candidates.trial_id
    and results.cohort_id = previous_candidates.cohort_id
    and results.patient_key = previous_candidates.patient_key
where results.candidate_status in ('ready_for_review', 'missing_data')
