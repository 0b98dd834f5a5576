-- Rules lab and lab_uln (docs/clinical-rules.md#lab-thresholds, #lab-uln: anc, platelets,
-- hemoglobin, albumin, sodium; bilirubin, ast, alt). The latest result in the window
-- (int_labs__latest_in_window) is compared with the criterion's threshold, or with uln_multiplier x
-- ULN (int_labs__uln), the multiplier raised by a modifier condition the patient has (Gilbert,
-- liver metastases; config.trial_criterion_concepts). An unusable latest result is unknown with its
-- issue; a comparator result decides only when it decides (macro comparator_status).
with

population as (

    select * from {{ ref('int_screening__population') }}

),

criteria as (

    select distinct
        trial_id,
        criterion_id,
        label,
        rule,
        analyte,
        operator,
        threshold,
        unit,
        uln_multiplier,
        window_days
    from {{ ref('stg_config__trial_criteria') }}
    where rule in ('lab', 'lab_uln')

),

concepts as (

    select * from {{ ref('stg_config__trial_criterion_concepts') }}
    where role = 'modifier'

),

concept_labels as (

    select
        concept,
        label
    from {{ ref('condition_concepts') }}

),

latest as (

    select * from {{ ref('int_labs__latest_in_window') }}

),

uln as (

    select * from {{ ref('int_labs__uln') }}

),

diagnoses as (

    select * from {{ ref('int_diagnoses__concepts') }}
    where matched_on = 'code'

),

modifiers as (

    -- the largest multiplier among the modifier conditions each patient has
    select
        concepts.trial_id,
        concepts.criterion_id,
        diagnoses.patient_mrn,
        concepts.concept,
        -- the seed's words for the concept (liver metastases), never the token
        coalesce(concept_labels.label, concepts.concept) as concept_label,
        concepts.modifier_uln_multiplier,
        diagnoses.code,
        row_number() over (
            partition by concepts.trial_id, concepts.criterion_id, diagnoses.patient_mrn
            order by concepts.modifier_uln_multiplier desc, diagnoses.evidence_date, diagnoses.condition_id
        ) as modifier_rank
    from concepts
    inner join diagnoses
        on concepts.concept = diagnoses.concept
    left join concept_labels
        on concepts.concept = concept_labels.concept

),

joined as (

    select
        criteria.*,
        population.patient_mrn,
        latest.observation_id,
        latest.evidence_source,
        latest.evidence_id,
        latest.effective_at,
        latest.effective_date,
        latest.value_comparator,
        latest.value_canonical,
        latest.canonical_unit,
        latest.value_issue,
        latest.value_raw,
        latest.unit_raw,
        latest.value_text as value_text_sent,
        uln.uln,
        uln.uln_source,
        uln.value_x_uln,
        modifiers.concept as modifier_concept,
        modifiers.concept_label as modifier_label,
        modifiers.code as modifier_code,
        case
            when criteria.rule = 'lab_uln'
                then coalesce(modifiers.modifier_uln_multiplier, criteria.uln_multiplier)
        end as applied_uln_multiplier
    from criteria
    inner join population
        on criteria.trial_id = population.trial_id
    left join latest
        on criteria.trial_id = latest.trial_id
        and population.patient_mrn = latest.patient_mrn
        and criteria.analyte = latest.analyte
    left join uln
        on criteria.trial_id = uln.trial_id
        and population.patient_mrn = uln.patient_mrn
        and criteria.analyte = uln.analyte
    left join modifiers
        on criteria.trial_id = modifiers.trial_id
        and criteria.criterion_id = modifiers.criterion_id
        and population.patient_mrn = modifiers.patient_mrn
        and modifiers.modifier_rank = 1

),

limits as (

    select
        *,
        case
            when rule = 'lab' then threshold
            else {{ clinical_round('applied_uln_multiplier * uln') }}
        end as limit_value,
        case when rule = 'lab' then operator else '<=' end as limit_operator
    from joined

),

decided as (

    select
        *,
        case
            when observation_id is null then 'unknown'
            when value_issue is not null or value_canonical is null then 'unknown'
            when limit_value is null then 'unknown'
            else {{ comparator_status('value_canonical', 'value_comparator', 'limit_operator', 'limit_value') }}
        end as status
    from limits

),

described as (

    select
        *,
        label || ' ' || {{ comparator_prefix('value_comparator') }} || {{ fmt_num('value_canonical') }}
        || ' ' || {{ unit_display('canonical_unit') }}
        || case
            when rule = 'lab_uln' and uln is not null
                then ' (' || {{ fmt_num('value_x_uln') }} || ' × ULN ' || {{ fmt_num('uln') }}
                    || ', ' || uln_source || ' range)'
            else ''
        end
        || ' on ' || {{ fmt_date('effective_date') }} as value_text,
        case
            when rule = 'lab' then {{ fmt_num('threshold') }}
            else {{ fmt_num('applied_uln_multiplier') }} || ' × ULN'
                || case when uln is not null then ' = ' || {{ fmt_num('limit_value') }} else '' end
                || case
                    when modifier_concept is not null
                        then ' (' || modifier_label || ' coded, ' || coalesce({{ display_code('modifier_code') }}, '') || ')'
                    else ''
                end
        end as limit_text
    from decided

)

select
    -- ids
    trial_id,
    criterion_id,
    patient_mrn,

    -- decision
    status,
    cast(value_canonical as {{ clinical_double() }}) as value_numeric,
    cast(canonical_unit as {{ dbt.type_string() }}) as value_unit,
    cast(limit_value as {{ clinical_double() }}) as threshold,
    cast(case when rule = 'lab_uln' then uln end as {{ clinical_double() }}) as uln,
    cast(case when rule = 'lab_uln' then uln_source end as {{ dbt.type_string() }}) as uln_source,
    cast(limit_operator as {{ dbt.type_string() }}) as comparator,

    -- evidence
    evidence_source,
    evidence_id,
    cast(effective_at as {{ dbt.type_timestamp() }}) as evidence_at,
    cast(effective_date as date) as evidence_date,
    case
        when status in ('met', 'not_met') then {{ valid_until('effective_date', 'window_days') }}
    end as valid_until,
    -- what would decide an unknown (key of the seed criterion_next_steps)
    cast(case
        when status <> 'unknown' then null
        when observation_id is not null and value_issue is null and value_canonical is not null
            and limit_value is null then 'reference_range'
        else analyte
    end as {{ dbt.type_string() }}) as missing_item,

    -- reason
    case
        when observation_id is null
            then 'No ' || label || ' result in the ' || cast(window_days as {{ dbt.type_string() }})
                || ' days to ' || {{ fmt_date(screening_date()) }}
        -- a text value that could not be read is sender text: restricted only
        when value_issue = 'non_numeric'
            then 'Latest ' || label || ' on ' || {{ fmt_date('effective_date') }}
                || ' is unusable (non_numeric: text withheld); older results are not used'
        when value_issue is not null or value_canonical is null
            then 'Latest ' || label || ' on ' || {{ fmt_date('effective_date') }} || ' is unusable ('
                || coalesce(value_issue, 'no value') || ': '
                || coalesce({{ double_text('value_raw') }}, '') || ' '
                -- a unit outside the seed's aliases is sender text: restricted only
                || case when value_issue = 'unmapped_unit' then '(unit withheld)' else coalesce(unit_raw, '') end
                || '); older results are not used'
        when limit_value is null
            then value_text || ': no upper limit of normal (result range absent or implausible, '
                || 'no institutional range)'
        when status = 'met'
            then value_text || ' ' || {{ operator_display('limit_operator') }} || ' ' || limit_text
        when status = 'not_met'
            then value_text || ' ' || {{ operator_negated_display('limit_operator') }} || ' ' || limit_text
        else value_text || ' cannot decide ' || {{ operator_display('limit_operator') }} || ' ' || limit_text
    end as reason,
    -- coordinators only (restricted.criterion_evidence): the unit and the text as sent
    case
        when observation_id is not null and value_issue = 'non_numeric'
            then 'Latest ' || label || ' on ' || {{ fmt_date('effective_date') }} || ' is unusable ('
                || value_issue || ': "' || coalesce(value_text_sent, '') || '" '
                || coalesce(unit_raw, '') || '); older results are not used'
        when observation_id is not null and value_issue = 'unmapped_unit'
            then 'Latest ' || label || ' on ' || {{ fmt_date('effective_date') }} || ' is unusable ('
                || value_issue || ': ' || coalesce({{ double_text('value_raw') }}, '') || ' '
                || coalesce(unit_raw, '') || '); older results are not used'
    end as reason_detail

from described
