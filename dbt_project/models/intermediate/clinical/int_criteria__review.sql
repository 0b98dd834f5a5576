-- Rule review (docs/clinical-rules.md#review-items: research_biopsy, informed_consent,
-- contraception, swallow_pills): structured data cannot decide these; a person must. A coded
-- condition of the criterion's `mention` concepts (pregnancy, dysphagia R13, gastrostomy Z93.1) is
-- named in the reason and becomes the evidence.
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
    where rule = 'review'

),

concepts as (

    select * from {{ ref('stg_config__trial_criterion_concepts') }}
    where role = 'mention'

),

diagnoses as (

    select * from {{ ref('int_diagnoses__concepts') }}
    where matched_on = 'code'

),

mentions as (

    select
        concepts.trial_id,
        concepts.criterion_id,
        diagnoses.patient_mrn,
        diagnoses.concept,
        diagnoses.code,
        diagnoses.code_label,
        diagnoses.evidence_source,
        diagnoses.evidence_id,
        diagnoses.evidence_date,
        row_number() over (
            partition by concepts.trial_id, concepts.criterion_id, diagnoses.patient_mrn
            order by diagnoses.evidence_date desc nulls last, diagnoses.condition_id
        ) as mention_rank,
        count(*) over (
            partition by concepts.trial_id, concepts.criterion_id, diagnoses.patient_mrn
        ) as n_mentions
    from concepts
    inner join diagnoses
        on concepts.concept = diagnoses.concept

)

select
    -- ids
    criteria.trial_id,
    criteria.criterion_id,
    population.patient_mrn,

    -- decision
    'review' as status,
    cast(null as {{ clinical_double() }}) as value_numeric,
    cast(null as {{ dbt.type_string() }}) as value_unit,
    cast(null as {{ clinical_double() }}) as threshold,
    cast(null as {{ clinical_double() }}) as uln,
    cast(null as {{ dbt.type_string() }}) as uln_source,
    cast(null as {{ dbt.type_string() }}) as comparator,

    -- evidence
    mentions.evidence_source,
    mentions.evidence_id,
    cast(mentions.evidence_date as {{ dbt.type_timestamp() }}) as evidence_at,
    cast(mentions.evidence_date as date) as evidence_date,
    cast(null as date) as valid_until,
    cast(null as {{ dbt.type_string() }}) as missing_item,

    -- reason (analysts): the code; reason_detail (coordinators, schema restricted) adds the
    -- source's display (docs/decisions.md "Free text from source records")
    criteria.label || ': to be confirmed by the study team'
    || case
        when mentions.concept is not null
            then '; ' || mentions.concept || ' coded on record: ' || coalesce({{ display_code('mentions.code') }}, '')
                || coalesce(' since ' || {{ fmt_date('mentions.evidence_date') }}, '')
                || case when mentions.n_mentions > 1
                        then ' and ' || cast(mentions.n_mentions - 1 as {{ dbt.type_string() }}) || ' more'
                    else ''
                end
        else ''
    end as reason,
    criteria.label || ': to be confirmed by the study team'
    || case
        when mentions.concept is not null
            then '; ' || mentions.concept || ' coded on record: ' || coalesce({{ display_code('mentions.code') }}, '')
                || ' (' || coalesce(mentions.code_label, '') || ')'
                || coalesce(' since ' || {{ fmt_date('mentions.evidence_date') }}, '')
                || case when mentions.n_mentions > 1
                        then ' and ' || cast(mentions.n_mentions - 1 as {{ dbt.type_string() }}) || ' more'
                    else ''
                end
        else ''
    end as reason_detail

from criteria
inner join population
    on criteria.trial_id = population.trial_id
left join mentions
    on criteria.trial_id = mentions.trial_id
    and criteria.criterion_id = mentions.criterion_id
    and population.patient_mrn = mentions.patient_mrn
    and mentions.mention_rank = 1
