-- Measurable disease per (trial, patient) (docs/clinical-rules.md#measurable-disease): met when any
-- counting lesion in the window is measurable (RECIST, int_tumor__lesions). The evidence is the
-- largest measurable lesion, else the largest lesion.
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
                case when is_measurable then 0 when is_measurable = false then 1 else 2 end,
                size_mm desc nulls last,
                effective_at desc,
                observation_id
        ) as evidence_rank,
        count(*) over (partition by trial_id, patient_mrn) as n_lesions,
        sum(case when is_measurable then 1 else 0 end)
            over (partition by trial_id, patient_mrn) as n_measurable,
        sum(case when is_measurable is null then 1 else 0 end)
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
    n_unusable,
    size_mm,
    method_code,
    method_class,
    is_nodal,
    minimum_size_mm,
    is_measurable,
    lesion_note,

    -- timestamps
    effective_at,
    effective_date

from ranked
where evidence_rank = 1
