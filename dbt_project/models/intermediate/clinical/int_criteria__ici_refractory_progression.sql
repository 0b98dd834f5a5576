{%- set codes = clinical_codes() -%}
-- Rule ici_refractory_progression (docs/clinical-rules.md#ici-refractory-progression): applies only
-- to patients with prior immune checkpoint inhibitor therapy (int_medications__ici). Progression
-- after the first ICI start (disease status 97509-4 = worsened, or a counting progression
-- condition) -> met; none recorded -> review (the protocol accepts a physician's rationale); no
-- prior ICI -> met, the clause does not apply.
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
    where rule = 'ici_refractory_progression'

),

ici as (

    select * from {{ ref('int_medications__ici') }}

),

observations as (

    select * from {{ ref('int_observations') }}

),

diagnoses as (

    select * from {{ ref('int_diagnoses__concepts') }}

),

progression_events as (

    select
        patient_mrn,
        observation_id as event_id,
        evidence_source,
        evidence_id,
        effective_at as event_at,
        effective_date as event_date,
        'disease status worsened' as event_text,
        'disease status worsened' as event_detail
    from observations
    where analyte = 'disease_status'
        and value_code = '{{ codes.disease_worsened }}'
        and effective_date <= {{ screening_date() }}

    union all

    select
        patient_mrn,
        condition_id as event_id,
        evidence_source,
        evidence_id,
        cast(evidence_date as {{ dbt.type_timestamp() }}) as event_at,
        evidence_date as event_date,
        case
            when matched_on = 'text'
                then 'progression condition (text matched "' || coalesce(matched_term, '') || '")'
            else 'progression condition ' || coalesce(code, '')
        end as event_text,
        'progression condition ' || coalesce(code_label, '') as event_detail
    from diagnoses
    where concept = 'progression'

),

progression_after_ici as (

    select
        progression_events.*,
        row_number() over (
            partition by progression_events.patient_mrn
            order by progression_events.event_date desc, progression_events.event_id
        ) as event_rank
    from progression_events
    inner join ici
        on progression_events.patient_mrn = ici.patient_mrn
    where progression_events.event_date > ici.first_ici_start_date

),

joined as (

    select
        criteria.trial_id,
        criteria.criterion_id,
        criteria.label,
        population.patient_mrn,
        ici.first_ici_medication_id,
        ici.first_ici_drug,
        ici.first_ici_label,
        ici.first_ici_start_date,
        ici.evidence_source as ici_evidence_source,
        ici.evidence_id as ici_evidence_id,
        progression_after_ici.event_id,
        progression_after_ici.evidence_source as progression_evidence_source,
        progression_after_ici.evidence_id as progression_evidence_id,
        progression_after_ici.event_at,
        progression_after_ici.event_date,
        progression_after_ici.event_text,
        progression_after_ici.event_detail,
        case
            when ici.first_ici_medication_id is null then 'met'
            when progression_after_ici.event_id is not null then 'met'
            else 'review'
        end as status
    from criteria
    inner join population
        on criteria.trial_id = population.trial_id
    left join ici
        on population.patient_mrn = ici.patient_mrn
    left join progression_after_ici
        on population.patient_mrn = progression_after_ici.patient_mrn
        and progression_after_ici.event_rank = 1

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

    -- evidence: the progression record, else the first ICI record; treatment history and
    -- documented progression do not expire (valid_until null)
    coalesce(progression_evidence_source, ici_evidence_source) as evidence_source,
    coalesce(progression_evidence_id, ici_evidence_id) as evidence_id,
    cast(
        coalesce(event_at, cast(first_ici_start_date as {{ dbt.type_timestamp() }}))
        as {{ dbt.type_timestamp() }}
    ) as evidence_at,
    cast(coalesce(event_date, first_ici_start_date) as date) as evidence_date,
    cast(null as date) as valid_until,
    cast(null as {{ dbt.type_string() }}) as missing_item,

    -- reason (analysts): drug code and seed term; reason_detail (coordinators, schema
    -- restricted) the drug and condition texts as sent (docs/decisions.md "Free text from
    -- source records")
    case
        when first_ici_medication_id is null
            then 'No prior immune checkpoint inhibitor on record: the clause does not apply'
        when event_id is not null
            then 'Prior ICI ' || coalesce(first_ici_label, '') || ' from '
                || coalesce({{ fmt_date('first_ici_start_date') }}, 'unknown date')
                || '; ' || event_text || ' on ' || {{ fmt_date('event_date') }}
        else 'Prior ICI ' || coalesce(first_ici_label, '') || ' from '
            || coalesce({{ fmt_date('first_ici_start_date') }}, 'unknown date')
            || ' without recorded progression after it: a physician documents the rationale'
    end as reason,
    case
        when first_ici_medication_id is null
            then 'No prior immune checkpoint inhibitor on record: the clause does not apply'
        when event_id is not null
            then 'Prior ICI ' || coalesce(first_ici_drug, '') || ' from '
                || coalesce({{ fmt_date('first_ici_start_date') }}, 'unknown date')
                || '; ' || event_detail || ' on ' || {{ fmt_date('event_date') }}
        else 'Prior ICI ' || coalesce(first_ici_drug, '') || ' from '
            || coalesce({{ fmt_date('first_ici_start_date') }}, 'unknown date')
            || ' without recorded progression after it: a physician documents the rationale'
    end as reason_detail

from joined
