{{ config(schema='restricted') }}
-- The coordinators' worklist (docs/specification.md#candidate-contacts; docs/decisions.md,
-- "The coordinators' worklist"): one row per (trial, cohort, patient, criterion) for every
-- candidate of this run, and for every patient who was a candidate in the previous run and is
-- no longer one, with the patient's identity, each criterion's status, value, threshold,
-- evidence date and the coordinator-facing reason, the margin to the threshold, how long the
-- evidence stays valid, the missing item and its next step (marts.criterion_evaluations), and
-- per patient the re-screen date and the sole missing criterion (marts.screening_results).
-- Patients on the research-contact opt-out list (restricted.research_opt_outs, refreshed by
-- the worklist step of each run) never appear. Schema `restricted`; never granted to analysts.
{%- set opt_outs = adapter.get_relation(
        database=target.database, schema='restricted', identifier='research_opt_outs') %}
with

results as (

    select * from {{ ref('screening_results') }}

),

candidates as (

    select * from {{ ref('eligible_candidates') }}

),

previous_candidates as (

    -- the previous run's candidates, as eligible_candidates.is_new defines them
    select * from {{ ref('int_screening__previous_candidates') }}

),

evaluations as (

    select * from {{ ref('criterion_evaluations') }}

),

evidence as (

    select * from {{ ref('criterion_evidence') }}

),

criteria as (

    select * from {{ ref('stg_config__trial_criteria') }}

),

population as (

    select * from {{ ref('int_screening__population') }}

),

patients as (

    select * from {{ ref('int_patients') }}

),

listed as (

    -- this run's candidates
    select
        candidates.trial_id,
        candidates.cohort_id,
        candidates.patient_key,
        candidates.candidate_status,
        candidates.n_unknown,
        candidates.is_new,
        false as is_no_longer_eligible,
        candidates.first_eligible_on,
        previous_candidates.previous_status,
        candidates.age_years,
        candidates.rescreen_by,
        candidates.sole_missing_criterion,
        candidates.sole_missing_next_step
    from candidates
    left join previous_candidates
        on candidates.trial_id = previous_candidates.trial_id
        and candidates.cohort_id = previous_candidates.cohort_id
        and candidates.patient_key = previous_candidates.patient_key

    union all

    -- candidates of the previous run who are screened ineligible now
    select
        results.trial_id,
        results.cohort_id,
        results.patient_key,
        results.candidate_status,
        results.n_unknown,
        false as is_new,
        true as is_no_longer_eligible,
        cast(null as date) as first_eligible_on,
        previous_candidates.previous_status,
        results.age_years,
        results.rescreen_by,
        results.sole_missing_criterion,
        results.sole_missing_next_step
    from results
    inner join previous_candidates
        on results.trial_id = previous_candidates.trial_id
        and results.cohort_id = previous_candidates.cohort_id
        and results.patient_key = previous_candidates.patient_key
    where results.candidate_status not in ('ready_for_review', 'missing_data')

),

identified as (

    select
        listed.*,
        patients.patient_mrn as mrn,
        patients.family_name,
        patients.given_name,
        patients.birth_date
    from listed
    inner join population
        on listed.trial_id = population.trial_id
        and listed.patient_key = population.patient_key
    inner join patients
        on population.patient_mrn = patients.patient_mrn
    {%- if opt_outs is not none %}
    where not exists (
        select 1 from {{ opt_outs }} as opt_outs
        where opt_outs.mrn = patients.patient_mrn
    )
    {%- endif %}

)

select
    -- ids
    evaluations.run_id,
    evaluations.screening_date,
    identified.trial_id,
    identified.cohort_id,
    identified.patient_key,

    -- identity (PHI)
    identified.mrn,
    identified.family_name,
    identified.given_name,
    identified.birth_date,
    identified.age_years,

    -- candidate
    identified.candidate_status,
    identified.n_unknown,
    identified.is_new,
    identified.is_no_longer_eligible,
    identified.previous_status,
    identified.first_eligible_on,
    identified.rescreen_by,
    identified.sole_missing_criterion,
    identified.sole_missing_next_step,

    -- criterion
    evaluations.criterion_id,
    criteria.ordinal as criterion_ordinal,
    criteria.label as criterion_label,
    evaluations.status as criterion_status,
    evaluations.value_numeric,
    evaluations.value_unit,
    evaluations.comparator,
    evaluations.threshold,
    evaluations.uln,
    evaluations.margin,
    evaluations.near_flip,

    -- evidence
    evaluations.evidence_source,
    evaluations.evidence_at,
    evaluations.evidence_date,
    evaluations.valid_until,
    evidence.reason_detail as reason,

    -- what to do
    evaluations.missing_item,
    evaluations.next_step

from identified
inner join evaluations
    on identified.trial_id = evaluations.trial_id
    and identified.cohort_id = evaluations.cohort_id
    and identified.patient_key = evaluations.patient_key
inner join criteria
    on evaluations.trial_id = criteria.trial_id
    and evaluations.cohort_id = criteria.cohort_id
    and evaluations.criterion_id = criteria.criterion_id
left join evidence
    on evaluations.trial_id = evidence.trial_id
    and evaluations.cohort_id = evidence.cohort_id
    and evaluations.patient_key = evidence.patient_key
    and evaluations.criterion_id = evidence.criterion_id
