-- Rule diagnosis (docs/clinical-rules.md#diagnosis): a counting condition of the
-- criterion's `diagnosis` concepts (coded) or `diagnosis_text` concepts (text-matched,
-- flagged in the reason). Met with advanced-disease evidence (`advanced` concepts, e.g.
-- metastasis C77-C79), review without it (a clinician confirms "advanced / not curable by
-- surgery"), not_met with no such diagnosis. Concepts: config.trial_criterion_concepts.
with

population as (

    select * from {{ ref('int_screening__population') }}

),

criteria as (

    select distinct
        trial_id,
        criterion_id,
        label
    from {{ ref('stg_config__trial_criteria') }}
    where rule = 'diagnosis'

),

concepts as (

    select * from {{ ref('stg_config__trial_criterion_concepts') }}

),

diagnoses as (

    select * from {{ ref('int_diagnoses__concepts') }}

),

diagnosis_evidence as (

    -- coded matches first, then the earliest
    select
        concepts.trial_id,
        concepts.criterion_id,
        diagnoses.*,
        row_number() over (
            partition by concepts.trial_id, concepts.criterion_id, diagnoses.patient_mrn
            order by
                case when diagnoses.matched_on = 'code' then 0 else 1 end,
                diagnoses.evidence_date asc nulls last,
                diagnoses.condition_id
        ) as evidence_rank
    from concepts
    inner join diagnoses
        on concepts.concept = diagnoses.concept
        and (
            (concepts.role = 'diagnosis' and diagnoses.matched_on = 'code')
            or (concepts.role = 'diagnosis_text' and diagnoses.matched_on = 'text')
        )

),

advanced_evidence as (

    select
        concepts.trial_id,
        concepts.criterion_id,
        diagnoses.*,
        row_number() over (
            partition by concepts.trial_id, concepts.criterion_id, diagnoses.patient_mrn
            order by diagnoses.evidence_date asc nulls last, diagnoses.condition_id
        ) as evidence_rank
    from concepts
    inner join diagnoses
        on concepts.concept = diagnoses.concept
    where concepts.role = 'advanced'
        and diagnoses.matched_on = 'code'

),

conditions as (

    select * from {{ ref('int_conditions') }}

),

site_only as (

    -- a sarcoma coded only by site (ICD-10 C48/C49, concept sts) on a patient with no ICD-O-3
    -- histology on record: a histology-specific criterion (ASPS) cannot be decided from codes
    -- (the histology may be in a pathology report) -> review, not not_met
    select
        diagnoses.patient_mrn,
        diagnoses.code,
        diagnoses.evidence_source,
        diagnoses.evidence_id,
        diagnoses.evidence_date,
        row_number() over (
            partition by diagnoses.patient_mrn
            order by diagnoses.evidence_date asc nulls last, diagnoses.condition_id
        ) as evidence_rank
    from diagnoses
    where diagnoses.concept = 'sts'
        and diagnoses.code_system = 'icd10cm'
        and diagnoses.patient_mrn not in (
            select histologies.patient_mrn
            from conditions as histologies
            where histologies.code_system = 'icdo3'
                and not histologies.is_refuted
                and histologies.patient_mrn is not null
        )

),

histology_criteria as (

    -- diagnosis criteria that name a histology: their concepts do not include the site-coded
    -- soft tissue sarcoma concept
    select distinct
        trial_id,
        criterion_id
    from concepts
    where role = 'diagnosis'
        and not exists (
            select 1 as sts_concept
            from concepts as other
            where other.trial_id = concepts.trial_id
                and other.criterion_id = concepts.criterion_id
                and other.concept = 'sts'
        )

),

dx as (

    select * from diagnosis_evidence
    where evidence_rank = 1

),

adv as (

    select * from advanced_evidence
    where evidence_rank = 1

),

site as (

    select
        histology_criteria.trial_id,
        histology_criteria.criterion_id,
        site_only.*
    from histology_criteria
    cross join site_only
    where site_only.evidence_rank = 1

),

evidence_keys as (

    select
        trial_id,
        criterion_id,
        patient_mrn
    from dx
    union
    select
        trial_id,
        criterion_id,
        patient_mrn
    from adv
    union
    select
        trial_id,
        criterion_id,
        patient_mrn
    from site

),

evidence as (

    -- one row per (trial, criterion, patient) with any evidence, joined to the population
    -- once: chaining these as left joins onto criteria x population made DuckDB 2.0.0 raise
    -- an INTERNAL error (dict-surviving hash join) at 300,000 patients (docs/decisions.md
    -- "DuckDB 2.0.0: dict-surviving hash join"; docs/upstream/duckdb-dict-surviving-join.md)
    select
        evidence_keys.trial_id,
        evidence_keys.criterion_id,
        evidence_keys.patient_mrn,
        dx.condition_id as dx_condition_id,
        dx.evidence_source as dx_evidence_source,
        dx.evidence_id as dx_evidence_id,
        dx.evidence_date as dx_date,
        dx.matched_on as dx_matched_on,
        dx.code as dx_code,
        dx.code_label as dx_label,
        dx.matched_term as dx_term,
        adv.condition_id as adv_condition_id,
        adv.code as adv_code,
        adv.code_label as adv_label,
        site.code as site_code,
        site.evidence_source as site_evidence_source,
        site.evidence_id as site_evidence_id,
        site.evidence_date as site_date
    from evidence_keys
    left join dx
        on evidence_keys.trial_id = dx.trial_id
        and evidence_keys.criterion_id = dx.criterion_id
        and evidence_keys.patient_mrn = dx.patient_mrn
    left join adv
        on evidence_keys.trial_id = adv.trial_id
        and evidence_keys.criterion_id = adv.criterion_id
        and evidence_keys.patient_mrn = adv.patient_mrn
    left join site
        on evidence_keys.trial_id = site.trial_id
        and evidence_keys.criterion_id = site.criterion_id
        and evidence_keys.patient_mrn = site.patient_mrn

),

joined as (

    select
        criteria.trial_id,
        criteria.criterion_id,
        criteria.label,
        population.patient_mrn,
        evidence.dx_condition_id,
        evidence.dx_evidence_source,
        evidence.dx_evidence_id,
        evidence.dx_date,
        evidence.dx_matched_on,
        evidence.dx_code,
        evidence.dx_label,
        evidence.dx_term,
        evidence.adv_condition_id,
        evidence.adv_code,
        evidence.adv_label,
        evidence.site_code,
        evidence.site_evidence_source,
        evidence.site_evidence_id,
        evidence.site_date,
        case
            when evidence.dx_condition_id is null and evidence.site_code is not null then 'review'
            when evidence.dx_condition_id is null then 'not_met'
            when evidence.adv_condition_id is not null then 'met'
            else 'review'
        end as status
    from criteria
    inner join population
        on criteria.trial_id = population.trial_id
    left join evidence
        on criteria.trial_id = evidence.trial_id
        and criteria.criterion_id = evidence.criterion_id
        and population.patient_mrn = evidence.patient_mrn

)

select
    -- ids
    trial_id,
    criterion_id,
    patient_mrn,

    -- decision
    status,
    cast(null as {{ clinical_double() }}) as value_numeric,
    cast(null as {{ dbt.type_string() }}) as value_unit,
    cast(null as {{ clinical_double() }}) as threshold,
    cast(null as {{ clinical_double() }}) as uln,
    cast(null as {{ dbt.type_string() }}) as uln_source,
    cast(null as {{ dbt.type_string() }}) as comparator,

    -- evidence: a coded diagnosis does not expire (valid_until null)
    coalesce(dx_evidence_source, site_evidence_source) as evidence_source,
    coalesce(dx_evidence_id, site_evidence_id) as evidence_id,
    cast(coalesce(dx_date, site_date) as {{ dbt.type_timestamp() }}) as evidence_at,
    cast(coalesce(dx_date, site_date) as date) as evidence_date,
    cast(null as date) as valid_until,
    cast(null as {{ dbt.type_string() }}) as missing_item,

    -- reason (analysts): codes and seed terms only; reason_detail (coordinators, schema
    -- restricted) quotes the source's display or text (docs/decisions.md "Free text from
    -- source records")
    case
        when status = 'not_met'
            then 'No ' || label || ' diagnosis on record'
        when dx_condition_id is null
            then label || ': sarcoma coded only by site (' || {{ display_code('site_code') }}
                || coalesce(' since ' || {{ fmt_date('site_date') }}, '')
                || ') with no histology code on record: to be confirmed from the pathology report'
        else label || ' diagnosis '
            || case
                when dx_matched_on = 'text'
                    then 'found by the term "' || coalesce(dx_term, '') || '" in the condition text'
                else 'coded ' || {{ display_code('dx_code') }}
            end
            || coalesce(' since ' || {{ fmt_date('dx_date') }}, '')
            || case
                when status = 'met'
                    then '; advanced disease coded ' || {{ display_code('adv_code') }}
                else '; no metastasis or advanced stage coded: advanced or not curable by surgery to be confirmed by a clinician'
            end
    end as reason,
    case
        when status = 'not_met'
            then 'No ' || label || ' diagnosis on record'
        when dx_condition_id is null
            then label || ': sarcoma coded only by site (' || {{ display_code('site_code') }}
                || coalesce(' since ' || {{ fmt_date('site_date') }}, '')
                || ') with no histology code on record: to be confirmed from the pathology report'
        else label || ' diagnosis '
            || case
                when dx_matched_on = 'text' then 'found in the text "' || coalesce(dx_label, '') || '"'
                else 'coded ' || {{ display_code('dx_code') }}
                    || case when dx_label <> {{ display_code('dx_code') }} then ' (' || dx_label || ')' else '' end
            end
            || coalesce(' since ' || {{ fmt_date('dx_date') }}, '')
            || case
                when status = 'met'
                    then '; advanced disease coded ' || {{ display_code('adv_code') }}
                        || case when adv_label <> {{ display_code('adv_code') }} then ' (' || adv_label || ')' else '' end
                else '; no metastasis or advanced stage coded: advanced or not curable by surgery to be confirmed by a clinician'
            end
    end as reason_detail

from joined
