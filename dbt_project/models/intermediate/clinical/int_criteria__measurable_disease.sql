-- Rule measurable_disease (docs/clinical-rules.md#measurable-disease; RECIST 1.1): met when any
-- counting lesion in the tumor window is measurable (int_tumor__measurable_disease). Lesions
-- present but none measurable -> not_met (the reason names the largest lesion and why, e.g. no
-- imaging method); only unusable sizes -> unknown; no measurement in the window -> unknown.
with

population as (

    select * from {{ ref('int_screening__population') }}

),

criteria as (

    select distinct trial_id, criterion_id, label, window_days
    from {{ source('config', 'trial_criteria') }}
    where rule = 'measurable_disease'

),

tumor as (

    select * from {{ ref('int_tumor__measurable_disease') }}

),

joined as (

    select
        criteria.*,
        population.patient_mrn,
        tumor.observation_id,
        tumor.evidence_source,
        tumor.evidence_id,
        tumor.effective_at,
        tumor.effective_date,
        tumor.n_lesions,
        tumor.n_measurable,
        tumor.n_unusable,
        tumor.size_mm,
        tumor.method_code,
        tumor.method_class,
        tumor.is_nodal,
        tumor.minimum_size_mm,
        tumor.lesion_note,
        case
            when tumor.observation_id is null then 'unknown'
            when tumor.n_measurable > 0 then 'met'
            when tumor.n_unusable = tumor.n_lesions then 'unknown'
            else 'not_met'
        end as status
    from criteria
    inner join population
        on criteria.trial_id = population.trial_id
    left join tumor
        on criteria.trial_id = tumor.trial_id
        and population.patient_mrn = tumor.patient_mrn

)

select
    -- ids
    trial_id,
    criterion_id,
    patient_mrn,

    -- decision
    status,
    cast(size_mm as {{ clinical_double() }}) as value_numeric,
    cast(case when size_mm is not null then 'mm' end as {{ dbt.type_string() }}) as value_unit,
    cast(minimum_size_mm as {{ clinical_double() }}) as threshold,
    cast(null as {{ clinical_double() }}) as uln,
    cast(null as {{ dbt.type_string() }}) as uln_source,

    -- evidence
    evidence_source,
    evidence_id,
    cast(effective_at as {{ dbt.type_timestamp() }}) as evidence_at,

    -- reason
    case
        when observation_id is null
            then 'No tumor measurement in the ' || cast(window_days as {{ dbt.type_string() }})
                || ' days to ' || {{ fmt_date(screening_date()) }}
        else
            case when is_nodal then 'Nodal lesion (short axis) ' else 'Lesion ' end
            || coalesce({{ fmt_num('size_mm', 1) }} || ' mm', 'size unusable')
            -- a recognized method only: an unrecognized method code is sender text
            || case
                when method_class = 'caliper' then ' by caliper'
                when method_class is not null then coalesce(' by ' || upper(method_code), '')
                else ''
            end
            || ' on ' || {{ fmt_date('effective_date') }}
            || case
                when status = 'met' then ' ≥ ' || {{ fmt_num('minimum_size_mm', 1) }} || ' mm: measurable'
                when minimum_size_mm is not null
                    then ' < ' || {{ fmt_num('minimum_size_mm', 1) }} || ' mm: not measurable'
                else ': ' || lesion_note
            end
            || ' (' || cast(n_measurable as {{ dbt.type_string() }}) || ' of '
            || cast(n_lesions as {{ dbt.type_string() }}) || ' lesions measurable)'
    end as reason

from joined
