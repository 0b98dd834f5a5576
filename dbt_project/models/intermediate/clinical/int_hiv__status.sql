{%- set codes = clinical_codes() -%}
-- HIV status per (trial, patient) (docs/clinical-rules.md#hiv-status, #hiv): HIV on record (a
-- counting B20/Z21 condition, concept 'hiv' in seed condition_codes, or a detectable HIV-1 viral
-- load on or before the screening date), active antiretroviral therapy, and the latest viral load
-- in the HIV window classified as undetectable / detectable / undecidable. The "undetectable below"
-- limit is the hiv criterion's threshold in config.trial_criteria.
with

population as (

    select * from {{ ref('int_screening__population') }}

),

criteria as (

    select * from {{ ref('stg_config__trial_criteria') }}

),

observations as (

    select * from {{ ref('int_observations') }}

),

diagnoses as (

    select * from {{ ref('int_diagnoses__concepts') }}

),

art as (

    select * from {{ ref('int_medications__antiretroviral') }}

),

limits as (

    select
        trial_id,
        max(threshold) as undetectable_below
    from criteria
    where rule = 'hiv'
    group by trial_id

),

viral_loads as (

    select
        population.trial_id,
        population.hiv_viral_load_window_days,
        limits.undetectable_below,
        observations.*,
        case
            -- qualitative answers (seed qualitative_results): "not detected" in every spelling;
            -- "detected, below the limit of quantification" is undetectable when that limit
            -- (the result's reference-range high) is at or under the trial's limit; "detected"
            -- without a number cannot tell
            when observations.value_qualitative = 'not_detected' then 'undetectable'
            when observations.value_qualitative = 'detected_below_lloq'
                then
                    case
                    -- a range sent without a unit is read in copies/mL
                        when coalesce(
                                observations.ref_high_canonical,
                                case when observations.unit_raw is null then observations.ref_high_raw end
                            ) <= limits.undetectable_below then 'undetectable'
                        else 'undecidable'
                    end
            when observations.value_qualitative = 'detected' then 'undecidable'
            when observations.value_issue is not null or observations.value_canonical is null
                then 'unusable'
            when observations.value_comparator in ('<', '<=')
                then
                    case
                        when observations.value_canonical < limits.undetectable_below then 'undetectable'
                        when observations.value_comparator = '<'
                            and observations.value_canonical <= limits.undetectable_below then 'undetectable'
                        else 'undecidable'
                    end
            when observations.value_comparator in ('>', '>=') then 'detectable'
            when observations.value_canonical < limits.undetectable_below then 'undetectable'
            else 'detectable'
        end as viral_load_class
    from observations
    inner join population
        on observations.patient_mrn = population.patient_mrn
    inner join limits
        on population.trial_id = limits.trial_id
    where observations.analyte = 'hiv_viral_load'
        and observations.effective_date <= {{ screening_date() }}

),

latest_in_window as (

    select
        *,
        row_number() over (
            partition by trial_id, patient_mrn
            order by
                effective_at desc,
                issued_at desc nulls last,
                case when value_issue is null then 0 else 1 end,
                value_canonical desc nulls last,
                observation_id
        ) as recency_rank
    from viral_loads
    where {{ dbt.datediff('effective_date', screening_date(), 'day') }} <= hiv_viral_load_window_days

),

detectable_ever as (

    -- a quantified HIV-1 RNA (any value above zero without a "<" comparator), or HIV-1 RNA
    -- reported detected (quantified or not), is HIV on record
    select
        trial_id,
        patient_mrn,
        max(observation_id) as observation_id,
        max(effective_date) as last_detected_date
    from viral_loads
    where (
        value_issue is null
        and value_canonical > 0
        and coalesce(value_comparator, '') not in ('<', '<=')
        and coalesce(value_qualitative, '') <> 'not_detected'
    )
    or value_qualitative in ('detected', 'detected_below_lloq')
    group by trial_id, patient_mrn

),

hiv_diagnosis as (

    select
        patient_mrn,
        condition_id,
        evidence_source,
        evidence_id,
        code,
        evidence_date,
        row_number() over (partition by patient_mrn order by evidence_date asc nulls last, condition_id)
            as diagnosis_rank
    from diagnoses
    where concept = 'hiv'
        and matched_on = 'code'

)

select
    -- ids
    population.trial_id,
    population.patient_mrn,

    -- HIV on record
    hiv_diagnosis.condition_id as hiv_condition_id,
    hiv_diagnosis.evidence_source as hiv_condition_evidence_source,
    hiv_diagnosis.evidence_id as hiv_condition_evidence_id,
    hiv_diagnosis.code as hiv_condition_code,
    hiv_diagnosis.evidence_date as hiv_condition_date,
    detectable_ever.last_detected_date as hiv_detectable_viral_load_date,
    hiv_diagnosis.condition_id is not null or detectable_ever.patient_mrn is not null as has_hiv,

    -- antiretroviral therapy
    art.medication_id as art_medication_id,
    art.drug as art_drug,
    art.drug_label as art_drug_label,
    art.medication_id is not null as on_active_art,

    -- latest viral load in the window
    latest_in_window.observation_id as viral_load_observation_id,
    latest_in_window.evidence_source as viral_load_evidence_source,
    latest_in_window.evidence_id as viral_load_evidence_id,
    latest_in_window.effective_at as viral_load_effective_at,
    latest_in_window.value_canonical as viral_load_copies_ml,
    latest_in_window.value_comparator as viral_load_comparator,
    latest_in_window.value_qualitative as viral_load_qualitative,
    latest_in_window.value_issue as viral_load_issue,
    -- the value text as sent (coordinators only: restricted.criterion_evidence.reason_detail)
    latest_in_window.value_text as viral_load_value_text,
    latest_in_window.viral_load_class,
    limits.undetectable_below

from population
inner join limits
    on population.trial_id = limits.trial_id
left join hiv_diagnosis
    on population.patient_mrn = hiv_diagnosis.patient_mrn
    and hiv_diagnosis.diagnosis_rank = 1
left join detectable_ever
    on population.trial_id = detectable_ever.trial_id
    and population.patient_mrn = detectable_ever.patient_mrn
left join art
    on population.patient_mrn = art.patient_mrn
left join latest_in_window
    on population.trial_id = latest_in_window.trial_id
    and population.patient_mrn = latest_in_window.patient_mrn
    and latest_in_window.recency_rank = 1
