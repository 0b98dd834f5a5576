-- The value each (trial, patient, analyte) is judged on: the most recent counting result
-- effective within the window (docs/clinical-rules.md#labs-latest-in-window), inclusive at both
-- ends, as of the screening date. Ties on the same timestamp: the later-issued, then a usable over
-- an unusable result, then the worse value (lower for ">=" criteria, higher otherwise). The latest
-- result is kept even when it is unusable (value_issue not null), so the criterion turns unknown
-- instead of silently falling back to an older value.
with

observations as (

    select * from {{ ref('int_observations') }}

),

criteria as (

    select * from {{ ref('stg_config__trial_criteria') }}

),

settings as (

    select * from {{ ref('stg_config__trial_settings') }}

),

criterion_analytes as (

    -- window and "worse" direction of the analytes a trial's lab criteria name
    select
        trial_id,
        analyte,
        max(window_days) as window_days,
        min(case when operator in ('>=', '>') then -1 else 1 end) as worse_sign
    from criteria
    where rule in ('lab', 'lab_uln', 'renal')
        and analyte is not null
    group by trial_id, analyte

),

lab_observations as (

    -- every analyte gets the trial's lab window unless a criterion says otherwise, so the
    -- derived values of screening_results exist for analytes the trial does not judge
    select
        settings.trial_id,
        observations.*,
        coalesce(criterion_analytes.window_days, settings.labs_window_days) as window_days,
        coalesce(criterion_analytes.worse_sign, -1) as worse_sign
    from observations
    cross join settings
    left join criterion_analytes
        on settings.trial_id = criterion_analytes.trial_id
        and observations.analyte = criterion_analytes.analyte
    where observations.analyte is not null
        and observations.analyte not in ('ecog', 'karnofsky', 'lansky', 'tumor_size', 'disease_status')

),

in_window as (

    select *
    from lab_observations
    where effective_date <= {{ screening_date() }}
        and {{ dbt.datediff('effective_date', screening_date(), 'day') }} <= window_days

),

ranked as (

    select
        *,
        row_number() over (
            partition by trial_id, patient_mrn, analyte
            order by
                effective_at desc,
                issued_at desc nulls last,
                case when value_issue is null then 0 else 1 end,
                value_canonical * worse_sign desc nulls last,
                observation_id
        ) as recency_rank
    from in_window

)

select
    -- ids
    trial_id,
    patient_mrn,
    analyte,
    observation_id,
    evidence_source,
    evidence_id,

    -- values
    value_comparator,
    value_canonical,
    canonical_unit,
    value_issue,
    value_raw,
    unit_raw,
    value_code,
    value_text,
    ref_high_canonical,
    window_days,

    -- timestamps
    effective_at,
    effective_date,
    issued_at

from ranked
where recency_rank = 1
