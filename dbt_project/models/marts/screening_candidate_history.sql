{{ config(materialized='table') }}
-- Every published run's (patient, trial, cohort) candidate status: the memory behind
-- eligible_candidates.first_eligible_on and is_new. Pseudonymized: patient_key only.
--
-- Write-audit-publish: the history is rebuilt from the *published* history
-- (marts.screening_candidate_history, replaced only when a run publishes) plus this run's
-- rows. A run that fails validation therefore never enters the memory, and re-running the
-- same run_id replaces that run's rows (idempotent).
{%- set published = adapter.get_relation(
        database=target.database, schema='marts', identifier='screening_candidate_history') %}
with

results as (

    select * from {{ ref('screening_results') }}

),

current_rows as (

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

){% if published is not none %},

earlier_rows as (

    select
        run_id,
        screening_date,
        trial_id,
        cohort_id,
        patient_key,
        candidate_status,
        is_candidate,
        recorded_at
    from {{ published }}
    where run_id not in (select distinct run_id from current_rows)

){% endif %}

select * from current_rows
{% if published is not none -%}
union all
select * from earlier_rows
{%- endif %}
