-- The candidates of the previous run, per trial (docs/decisions.md, "Candidate status and
-- history"): the most recent other run of the published history whose screening date is on or
-- before this run's (latest recorded first on a tie), and its patients whose candidate_status
-- was ready_for_review or missing_data. eligible_candidates.is_new and the worklist's
-- no-longer-eligible rows and previous_status read it; one definition of "the previous run".
--
-- Write-audit-publish: it reads the *published* history (marts.screening_candidate_history,
-- replaced only when a run publishes), never this run's candidate schema, so a run that
-- failed validation is never anyone's previous run. This run's own rows are excluded by
-- run_id, so re-running a run_id compares with the run published before it. Empty on the
-- first run ever (every candidate is new).
{%- set published = adapter.get_relation(
        database=target.database, schema='marts', identifier='screening_candidate_history') %}
{%- if published is not none %}
with

history as (

    select * from {{ published }}

),

current_run as (

    select
        cast({{ run_id() }} as {{ dbt.type_string() }}) as run_id,
        {{ screening_date() }} as screening_date

),

previous_run as (

    select
        history.trial_id,
        history.run_id,
        history.screening_date,
        row_number() over (
            partition by history.trial_id
            order by history.screening_date desc, max(history.recorded_at) desc, history.run_id desc
        ) as run_rank
    from history
    inner join current_run
        on history.run_id <> current_run.run_id
        and history.screening_date <= current_run.screening_date
    group by history.trial_id, history.run_id, history.screening_date

)

select
    -- ids
    history.trial_id,
    history.cohort_id,
    history.patient_key,

    -- previous run
    history.run_id as previous_run_id,
    history.screening_date as previous_screening_date,
    history.candidate_status as previous_status

from history
inner join previous_run
    on history.trial_id = previous_run.trial_id
    and history.run_id = previous_run.run_id
    and previous_run.run_rank = 1
where history.is_candidate
{%- else %}
select
    -- ids
    cast(null as {{ dbt.type_string() }}) as trial_id,
    cast(null as {{ dbt.type_string() }}) as cohort_id,
    cast(null as {{ dbt.type_string() }}) as patient_key,

    -- previous run
    cast(null as {{ dbt.type_string() }}) as previous_run_id,
    cast(null as date) as previous_screening_date,
    cast(null as {{ dbt.type_string() }}) as previous_status
where 1 = 0
{%- endif %}
