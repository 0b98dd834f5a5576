-- Rule min_age (docs/clinical-rules.md#age): age in whole years on the screening date >= threshold;
-- the birthday itself counts. Evidence: the patient record the birth date came from.
with

population as (

    select * from {{ ref('int_screening__population') }}

),

criteria as (

    select distinct
        trial_id,
        criterion_id,
        label,
        operator,
        threshold
    from {{ ref('stg_config__trial_criteria') }}
    where rule = 'min_age'

),

evaluated as (

    select
        criteria.trial_id,
        criteria.criterion_id,
        population.patient_mrn,
        population.age_years,
        population.birth_date_implausible,
        population.birth_date_conflict,
        population.birth_date_sources,
        population.evidence_source,
        -- the patient record is the evidence; its id is the MRN in CSV feeds, so the mart
        -- points to it by pseudonym (analysts read marts: no MRN may reach them)
        {{ dbt.concat(["'patient/'", "population.patient_key"]) }} as evidence_id,
        criteria.label,
        criteria.operator,
        criteria.threshold,
        {{ comparator_status('population.age_years', 'null', 'criteria.operator', 'criteria.threshold') }}
            as decided_status
    from criteria
    inner join population
        on criteria.trial_id = population.trial_id

)

select
    -- ids
    trial_id,
    criterion_id,
    patient_mrn,

    -- decision
    coalesce(decided_status, 'unknown') as status,
    cast(age_years as {{ clinical_double() }}) as value_numeric,
    cast('years' as {{ dbt.type_string() }}) as value_unit,
    cast(threshold as {{ clinical_double() }}) as threshold,
    cast(null as {{ clinical_double() }}) as uln,
    cast(null as {{ dbt.type_string() }}) as uln_source,
    cast(operator as {{ dbt.type_string() }}) as comparator,

    -- evidence: a birth date does not expire (valid_until null)
    case when decided_status is not null then evidence_source end as evidence_source,
    case when decided_status is not null then evidence_id end as evidence_id,
    cast(null as {{ dbt.type_timestamp() }}) as evidence_at,
    cast(null as date) as evidence_date,
    cast(null as date) as valid_until,
    cast(case when decided_status is null then 'birth_date' end as {{ dbt.type_string() }}) as missing_item,

    -- reason
    case
        when decided_status is null and birth_date_conflict
            then 'Birth date differs between the ' || birth_date_sources
                || ' feeds: confirm the birth date'
        when decided_status is null and birth_date_implausible
            then 'Recorded birth date is implausible (before 1900 or after the record was received)'
        when decided_status is null then 'No birth date on record'
        else 'Age ' || cast(age_years as {{ dbt.type_string() }}) || ' on '
            || {{ fmt_date(screening_date()) }} || ' '
            || case when decided_status = 'met' then {{ operator_display('operator') }}
                else {{ operator_negated_display('operator') }}
            end
            || ' ' || {{ fmt_num('threshold', 0) }}
    end as reason,
    cast(null as {{ dbt.type_string() }}) as reason_detail

from evaluated
