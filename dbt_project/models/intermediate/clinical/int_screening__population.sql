-- Every screened patient once per trial in the run, with the trial's settings and the
-- patient's age on the screening date: the population every criterion model evaluates.
-- Who is screened is decided in one place, int_screening__patient_status (docs/decisions.md
-- "Who is screened"): not a test patient, not an MRN merged into another, born on or before
-- the screening date, no recorded death on or before it. A patient with no birth date is
-- screened (age is then unknown), and so is a patient whose recorded birth date is
-- implausible (before 1900, or after the day the record was landed: 0001-01-01 and 9999-12-31
-- are placeholders, not births): age unknown, the reason says why (docs/decisions.md,
-- "Per-record containment").
with

patients as (

    select patients.*
    from {{ ref('int_patients') }} as patients
    inner join {{ ref('int_screening__patient_status') }} as status
        on patients.patient_mrn = status.patient_mrn
    where status.exclusion_reason is null

),

trials as (

    select * from {{ ref('stg_config__trials') }}

),

settings as (

    select * from {{ ref('stg_config__trial_settings') }}

),

population as (

    select
        -- ids
        trials.trial_id,
        patients.patient_mrn,
        patients.patient_key,
        patients.evidence_source,
        patients.evidence_id,

        -- demographics
        patients.sex,
        patients.birth_date,
        -- feeds that disagree on the birth date (docs/decisions.md "Demographics merged field
        -- by field"): birth_date is then null and the age reason names them
        patients.birth_date_conflict,
        patients.birth_date_sources,
        {{ birth_date_implausible('patients.birth_date', 'patients.loaded_at') }}
            as birth_date_implausible,
        case
            when not {{ birth_date_implausible('patients.birth_date', 'patients.loaded_at') }}
                then {{ age_in_years('patients.birth_date', screening_date()) }}
        end as age_years,

        -- trial settings
        settings.labs_window_days,
        settings.performance_window_days,
        settings.tumor_window_days,
        settings.hiv_viral_load_window_days,
        settings.weight_window_days,
        settings.height_adult_age_years,
        settings.height_child_window_days,
        settings.cg_weight_rule,
        settings.cg_adjusted_factor,
        settings.cg_bsa_formula,
        settings.cg_compare,
        settings.cg_threshold,
        settings.recist_ct_mr_caliper_mm,
        settings.recist_chest_xray_mm,
        settings.recist_nodal_short_axis_mm

    from trials
    cross join patients
    inner join settings
        on trials.trial_id = settings.trial_id

)

select * from population
