{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='run_id',
        on_schema_change='fail',
    )
}}
-- Every run's (patient, trial, cohort) candidate status, appended per run_id: the memory
-- behind eligible_candidates.first_eligible_on and is_new. Keyed on run_id with
-- delete+insert, so re-running the same run_id replaces that run's rows (idempotent) and a
-- full refresh forgets the history. Pseudonymized: patient_key only.
with

results as (

    select * from {{ ref('screening_results') }}

)

select
    -- ids
    run_id,
    screening_date,
    trial_id,
    cohort_id,
    patient_key,

    -- status
    candidate_status,
    candidate_status in ('ready_for_review', 'missing_data') as is_candidate,

    -- timestamps
    {{ dbt.current_timestamp() }} as recorded_at

from results
