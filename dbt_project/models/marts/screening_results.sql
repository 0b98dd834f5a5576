-- One row per (patient, trial, cohort) (docs/specification.md#candidate-status,
-- #screening-results): the candidate status, counts per criterion status, the criterion ids per
-- status in criterion order, and the derived values a coordinator reads (age, performance status
-- with display-only equivalents, labs, ×ULN, Cockcroft-Gault both ways). Pseudonymized: patient_key
-- only.
with

evaluations as (

    select * from {{ ref('criterion_evaluations') }}

),

criteria as (

    select * from {{ ref('stg_config__trial_criteria') }}

),

population as (

    select * from {{ ref('int_screening__population') }}

),

latest as (

    select * from {{ ref('int_labs__latest_in_window') }}

),

uln as (

    select * from {{ ref('int_labs__uln') }}

),

performance as (

    select * from {{ ref('int_performance__status') }}

),

clearance as (

    select * from {{ ref('int_renal__creatinine_clearance') }}

),

ordered as (

    -- only the columns counts and status_lists read (PostgreSQL materializes a CTE read
    -- twice; screening_funnel.sql)
    select
        evaluations.run_id,
        evaluations.screening_date,
        evaluations.trial_id,
        evaluations.cohort_id,
        evaluations.patient_key,
        evaluations.criterion_id,
        evaluations.status,
        evaluations.valid_until,
        evaluations.next_step,
        criteria.ordinal
    from evaluations
    inner join criteria
        on evaluations.trial_id = criteria.trial_id
        and evaluations.cohort_id = criteria.cohort_id
        and evaluations.criterion_id = criteria.criterion_id

),

counts as (

    select
        run_id,
        screening_date,
        trial_id,
        cohort_id,
        patient_key,
        sum(case when status = 'met' then 1 else 0 end) as n_met,
        sum(case when status = 'not_met' then 1 else 0 end) as n_not_met,
        sum(case when status = 'unknown' then 1 else 0 end) as n_unknown,
        sum(case when status = 'review' then 1 else 0 end) as n_review,
        -- the earliest date a criterion's evidence leaves its window
        min(valid_until) as rescreen_by,
        -- read only when exactly one criterion is unknown (sole_missing_*)
        max(case when status = 'unknown' then criterion_id end) as unknown_criterion_id,
        max(case when status = 'unknown' then next_step end) as unknown_next_step
    from ordered
    group by run_id, screening_date, trial_id, cohort_id, patient_key

),

-- the criterion ids per status in criterion order: one ordered aggregate over the rows that
-- are not met (about 40 %), where three over every row (a case per status) took 65-75 s of
-- the 100,000-patient build instead of 13-16 s (docs/benchmarks.md, "Where the
-- no-new-files night goes")
status_lists as (

    select
        trial_id,
        cohort_id,
        patient_key,
        status,
        {{ dbt.listagg("criterion_id", "','", "order by ordinal") }} as criterion_ids
    from ordered
    where status <> 'met'
    group by trial_id, cohort_id, patient_key, status

),

criterion_lists as (

    select
        trial_id,
        cohort_id,
        patient_key,
        max(case when status = 'unknown' then criterion_ids end) as unknown_criteria,
        max(case when status = 'review' then criterion_ids end) as review_criteria,
        max(case when status = 'not_met' then criterion_ids end) as not_met_criteria
    from status_lists
    group by trial_id, cohort_id, patient_key

),

lab_values as (

    -- latest usable value per analyte (null when the latest result is unusable)
    select
        latest.trial_id,
        latest.patient_mrn,
        max(case when latest.analyte = 'anc' then latest.value_canonical end) as anc,
        max(case when latest.analyte = 'platelets' then latest.value_canonical end) as platelets,
        max(case when latest.analyte = 'hemoglobin' then latest.value_canonical end) as hemoglobin,
        max(case when latest.analyte = 'albumin' then latest.value_canonical end) as albumin,
        max(case when latest.analyte = 'sodium' then latest.value_canonical end) as sodium,
        max(case when uln.analyte = 'bilirubin' then uln.value_x_uln end) as bilirubin_x_uln,
        max(case when uln.analyte = 'ast' then uln.value_x_uln end) as ast_x_uln,
        max(case when uln.analyte = 'alt' then uln.value_x_uln end) as alt_x_uln,
        max(case when uln.analyte = 'creatinine' then uln.value_x_uln end) as creatinine_x_uln
    from latest
    left join uln
        on latest.trial_id = uln.trial_id
        and latest.patient_mrn = uln.patient_mrn
        and latest.analyte = uln.analyte
    group by latest.trial_id, latest.patient_mrn

),

results as (

    select
        -- ids
        counts.run_id,
        counts.screening_date,
        counts.trial_id,
        counts.cohort_id,
        counts.patient_key,

        -- status
        case
            when counts.n_not_met > 0 then 'ineligible'
            when counts.n_unknown > 0 then 'missing_data'
            else 'ready_for_review'
        end as candidate_status,
        counts.n_met,
        counts.n_not_met,
        counts.n_unknown,
        counts.n_review,
        criterion_lists.unknown_criteria,
        criterion_lists.review_criteria,
        criterion_lists.not_met_criteria,
        counts.rescreen_by,
        -- the single missing item between this candidate and ready_for_review
        case when counts.n_not_met = 0 and counts.n_unknown = 1 then counts.unknown_criterion_id end
            as sole_missing_criterion,
        case when counts.n_not_met = 0 and counts.n_unknown = 1 then counts.unknown_next_step end
            as sole_missing_next_step,

        -- derived values
        population.age_years,
        performance.ecog,
        performance.karnofsky,
        performance.ecog_equivalent,
        performance.karnofsky_equivalent,
        lab_values.anc,
        lab_values.platelets,
        lab_values.hemoglobin,
        lab_values.bilirubin_x_uln,
        lab_values.ast_x_uln,
        lab_values.alt_x_uln,
        lab_values.creatinine_x_uln,
        clearance.crcl_ml_min,
        clearance.crcl_ml_min_1_73m2,
        lab_values.albumin,
        lab_values.sodium

    from counts
    inner join population
        on counts.trial_id = population.trial_id
        and counts.patient_key = population.patient_key
    left join criterion_lists
        on counts.trial_id = criterion_lists.trial_id
        and counts.cohort_id = criterion_lists.cohort_id
        and counts.patient_key = criterion_lists.patient_key
    left join performance
        on population.trial_id = performance.trial_id
        and population.patient_mrn = performance.patient_mrn
    left join lab_values
        on population.trial_id = lab_values.trial_id
        and population.patient_mrn = lab_values.patient_mrn
    left join clearance
        on population.trial_id = clearance.trial_id
        and population.patient_mrn = clearance.patient_mrn

)

select * from results
