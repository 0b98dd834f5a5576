-- Measurable disease per (trial, patient) (docs/clinical-rules.md#measurable-disease): met when any
-- measurement in the window is measurable (RECIST, int_tumor__lesions), not_met only when every
-- one is decided not measurable. The evidence is the largest measurable measurement, else the
-- largest undecided one, else the largest. Measurements are counted, not lesions: nothing in the
-- feeds identifies a lesion across measurements.
with

lesions as (

    select * from {{ ref('int_tumor__lesions') }}

),

ranked as (

    select
        *,
        row_number() over (
            partition by trial_id, patient_mrn
            order by
                case measurement_status
                    when 'measurable' then 0
                    when 'undecided' then 1
                    when 'not_measurable' then 2
                    else 3
                end,
                coalesce(axis_mm, size_mm) desc nulls last,
                effective_at desc,
                observation_id
        ) as evidence_rank,
        count(*) over (partition by trial_id, patient_mrn) as n_lesions,
        sum(case when is_measurable then 1 else 0 end)
            over (partition by trial_id, patient_mrn) as n_measurable,
        sum(case when measurement_status = 'not_measurable' then 1 else 0 end)
            over (partition by trial_id, patient_mrn) as n_not_measurable,
        sum(case when measurement_status = 'undecided' then 1 else 0 end)
            over (partition by trial_id, patient_mrn) as n_undecided,
        sum(case when measurement_status = 'unusable' then 1 else 0 end)
            over (partition by trial_id, patient_mrn) as n_unusable
    from lesions

)

select
    -- ids
    trial_id,
    patient_mrn,
    observation_id,
    evidence_source,
    evidence_id,

    -- values
    n_lesions,
    n_measurable,
    n_not_measurable,
    n_undecided,
    n_unusable,
    size_mm,
    axis_mm,
    method_code,
    method,
    method_accepted,
    is_nodal,
    minimum_size_mm,
    measurement_status,
    is_measurable,
    lesion_note,

    -- timestamps
    effective_at,
    effective_date

from ranked
where evidence_rank = 1
