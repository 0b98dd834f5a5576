-- The upper limit of normal for each latest result (docs/clinical-rules.md#uln): the result's own
-- reference range high when it lies within the analyte's plausible-ULN range (seed
-- plausible_uln_ranges), else the institutional range (seed institutional_reference_ranges, the
-- patient's sex, else the 'any' row). uln_source records which one was used.
with

latest as (

    select * from {{ ref('int_labs__latest_in_window') }}

),

population as (

    select * from {{ ref('int_screening__population') }}

),

plausible_uln as (

    select * from {{ ref('plausible_uln_ranges') }}

),

institutional as (

    select * from {{ ref('institutional_reference_ranges') }}

),

with_ranges as (

    select
        latest.*,
        plausible_uln.low as plausible_uln_low,
        plausible_uln.high as plausible_uln_high,
        coalesce(institutional_sex.high, institutional_any.high) as institutional_high
    from latest
    inner join population
        on latest.trial_id = population.trial_id
        and latest.patient_mrn = population.patient_mrn
    left join plausible_uln
        on latest.analyte = plausible_uln.analyte
    left join institutional as institutional_sex
        on latest.analyte = institutional_sex.analyte
        and population.sex = institutional_sex.sex
    left join institutional as institutional_any
        on latest.analyte = institutional_any.analyte
        and institutional_any.sex = 'any'

),

chosen as (

    select
        *,
        ref_high_canonical is not null
        and ref_high_canonical >= plausible_uln_low
        and ref_high_canonical <= plausible_uln_high as result_uln_plausible
    from with_ranges

)

select
    -- ids
    trial_id,
    patient_mrn,
    analyte,
    observation_id,

    -- values
    value_canonical,
    value_comparator,
    canonical_unit,
    ref_high_canonical,
    case when result_uln_plausible then ref_high_canonical else institutional_high end as uln,
    case
        when result_uln_plausible then 'result'
        when institutional_high is not null then 'institutional'
    end as uln_source,
    {{ x_uln('value_canonical', 'case when result_uln_plausible then ref_high_canonical else institutional_high end') }}
        as value_x_uln

from chosen
