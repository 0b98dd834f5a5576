-- Creatinine clearance by Cockcroft-Gault per (trial, patient)
-- (docs/clinical-rules.md#cockcroft-gault): the latest creatinine in the lab window, the latest
-- weight within the weight window, height = the latest measured at age >= adult age (any date) for adults, else within the
-- child window. CrCl (mL/min) and CrCl normalized to 1.73 m2 (BSA by Mosteller) are both
-- computed whenever the inputs allow, for both sexes (the criterion decides for other/unknown
-- sex only when both agree). Weight rule from the trial: actual (default), ideal (Devine),
-- adjusted (IBW + factor x (TBW - IBW)).
with

population as (

    select * from {{ ref('int_screening__population') }}

),

criteria as (

    select * from {{ ref('stg_config__trial_criteria') }}

),

latest as (

    select * from {{ ref('int_labs__latest_in_window') }}

),

uln as (

    select * from {{ ref('int_labs__uln') }}

),

observations as (

    select * from {{ ref('int_observations') }}

),

renal_analyte as (

    select distinct
        trial_id,
        analyte
    from criteria
    where rule = 'renal'

),

creatinine as (

    select
        latest.*,
        uln.uln,
        uln.uln_source
    from latest
    inner join renal_analyte
        on latest.trial_id = renal_analyte.trial_id
        and latest.analyte = renal_analyte.analyte
    left join uln
        on latest.trial_id = uln.trial_id
        and latest.patient_mrn = uln.patient_mrn
        and latest.analyte = uln.analyte

),

weights as (

    select
        population.trial_id,
        observations.*,
        row_number() over (
            partition by population.trial_id, observations.patient_mrn
            order by
                observations.effective_at desc,
                observations.issued_at desc nulls last,
                case when observations.value_issue is null then 0 else 1 end,
                observations.observation_id
        ) as recency_rank
    from observations
    inner join population
        on observations.patient_mrn = population.patient_mrn
    where observations.analyte = 'weight'
        and observations.effective_date <= {{ screening_date() }}
        and {{ dbt.datediff('observations.effective_date', screening_date(), 'day') }}
        <= population.weight_window_days

),

heights as (

    -- adults: measured at age >= adult age, any date; younger: within the child window.
    -- Only usable heights: an old implausible height is not "the latest measurement".
    select
        population.trial_id,
        observations.*,
        row_number() over (
            partition by population.trial_id, observations.patient_mrn
            order by
                observations.effective_at desc,
                observations.issued_at desc nulls last,
                observations.observation_id
        ) as recency_rank
    from observations
    inner join population
        on observations.patient_mrn = population.patient_mrn
    where observations.analyte = 'height'
        and observations.value_issue is null
        and observations.value_canonical is not null
        and observations.effective_date <= {{ screening_date() }}
        and (
            (
                population.age_years >= population.height_adult_age_years
                and {{ age_in_years('population.birth_date', 'observations.effective_date') }}
                >= population.height_adult_age_years
            )
            or (
                (population.age_years is null or population.age_years < population.height_adult_age_years)
                and {{ dbt.datediff('observations.effective_date', screening_date(), 'day') }}
                <= population.height_child_window_days
            )
        )

),

inputs as (

    select
        population.trial_id,
        population.patient_mrn,
        population.sex,
        population.age_years,
        population.cg_weight_rule,
        population.cg_adjusted_factor,
        population.cg_compare,
        population.cg_threshold,

        creatinine.observation_id as creatinine_observation_id,
        creatinine.evidence_source as creatinine_evidence_source,
        creatinine.evidence_id as creatinine_evidence_id,
        creatinine.effective_at as creatinine_effective_at,
        creatinine.value_canonical as creatinine_mg_dl,
        creatinine.value_comparator as creatinine_comparator,
        creatinine.value_issue as creatinine_issue,
        creatinine.value_raw as creatinine_value_raw,
        creatinine.unit_raw as creatinine_unit_raw,
        creatinine.uln as creatinine_uln,
        creatinine.uln_source as creatinine_uln_source,
        {{ x_uln('creatinine.value_canonical', 'creatinine.uln') }} as creatinine_x_uln,

        weights.observation_id as weight_observation_id,
        weights.effective_date as weight_date,
        weights.value_canonical as weight_kg,
        weights.value_issue as weight_issue,

        heights.observation_id as height_observation_id,
        heights.effective_date as height_date,
        heights.value_canonical as height_cm

    from population
    left join creatinine
        on population.trial_id = creatinine.trial_id
        and population.patient_mrn = creatinine.patient_mrn
    left join weights
        on population.trial_id = weights.trial_id
        and population.patient_mrn = weights.patient_mrn
        and weights.recency_rank = 1
    left join heights
        on population.trial_id = heights.trial_id
        and population.patient_mrn = heights.patient_mrn
        and heights.recency_rank = 1

),

dosing_weights as (

    -- Devine ideal body weight: 50 kg (male) / 45.5 kg (female) + 2.3 kg per inch over 5 ft
    select
        *,
        50.0 + 2.3 * (height_cm / 2.54 - 60) as ibw_male_kg,
        45.5 + 2.3 * (height_cm / 2.54 - 60) as ibw_female_kg
    from inputs

),

weights_used as (

    select
        *,
        case cg_weight_rule
            when 'actual' then weight_kg
            when 'ideal' then ibw_male_kg
            when 'adjusted' then ibw_male_kg + cg_adjusted_factor * (weight_kg - ibw_male_kg)
        end as cg_weight_male_kg,
        case cg_weight_rule
            when 'actual' then weight_kg
            when 'ideal' then ibw_female_kg
            when 'adjusted' then ibw_female_kg + cg_adjusted_factor * (weight_kg - ibw_female_kg)
        end as cg_weight_female_kg,
        {{ bsa_mosteller('height_cm', 'weight_kg') }} as bsa_m2
    from dosing_weights

),

exact_creatinine as (

    -- a comparator result (`<0.3`) bounds the creatinine but gives no value: CG from the
    -- bound would report a clearance the patient may not have, so none is computed
    select
        *,
        case when creatinine_comparator is null then creatinine_mg_dl end as cg_creatinine_mg_dl
    from weights_used

),

clearances as (

    select
        *,
        {{ cockcroft_gault('age_years', 'cg_weight_male_kg', 'cg_creatinine_mg_dl', 'false') }}
            as crcl_male_ml_min,
        {{ cockcroft_gault('age_years', 'cg_weight_female_kg', 'cg_creatinine_mg_dl', 'true') }}
            as crcl_female_ml_min
    from exact_creatinine

)

select
    -- ids
    trial_id,
    patient_mrn,
    creatinine_observation_id,
    creatinine_evidence_source,
    creatinine_evidence_id,
    weight_observation_id,
    height_observation_id,

    -- inputs
    sex,
    age_years,
    creatinine_mg_dl,
    creatinine_comparator,
    creatinine_issue,
    creatinine_value_raw,
    creatinine_unit_raw,
    creatinine_uln,
    creatinine_uln_source,
    creatinine_x_uln,
    weight_kg,
    weight_issue,
    height_cm,
    bsa_m2,
    cg_weight_rule,
    cg_compare,
    cg_threshold,

    -- clearances: both sexes, absolute and normalized
    crcl_male_ml_min,
    crcl_female_ml_min,
    {{ crcl_normalized('crcl_male_ml_min', 'bsa_m2') }} as crcl_male_ml_min_1_73m2,
    {{ crcl_normalized('crcl_female_ml_min', 'bsa_m2') }} as crcl_female_ml_min_1_73m2,

    -- clearance for the patient's sex (null for other/unknown: two values, see above)
    case sex when 'male' then crcl_male_ml_min when 'female' then crcl_female_ml_min end
        as crcl_ml_min,
    case sex
        when 'male' then {{ crcl_normalized('crcl_male_ml_min', 'bsa_m2') }}
        when 'female' then {{ crcl_normalized('crcl_female_ml_min', 'bsa_m2') }}
    end as crcl_ml_min_1_73m2,

    -- timestamps
    creatinine_effective_at,
    weight_date,
    height_date

from clearances
