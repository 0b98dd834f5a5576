-- Rule measurable_disease (docs/clinical-rules.md#measurable-disease; RECIST 1.1): met when any
-- measurement in the tumor window is measurable (int_tumor__measurable_disease); not_met only
-- when every one is decided not measurable; otherwise (a measurement without a recorded method
-- whose size does not settle it, a method RECIST does not accept, an unusable size) unknown,
-- the reason naming what to confirm; no measurement in the window -> unknown.
with

population as (

    select * from {{ ref('int_screening__population') }}

),

criteria as (

    select distinct
        trial_id,
        criterion_id,
        label,
        window_days
    from {{ ref('stg_config__trial_criteria') }}
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
        tumor.n_not_measurable,
        tumor.n_undecided,
        tumor.n_unusable,
        tumor.size_mm,
        tumor.axis_mm,
        tumor.method,
        tumor.method_accepted,
        tumor.measurement_status,
        tumor.is_nodal,
        tumor.minimum_size_mm,
        tumor.lesion_note,
        case
            when tumor.observation_id is null then 'unknown'
            when tumor.n_measurable > 0 then 'met'
            when tumor.n_not_measurable = tumor.n_lesions then 'not_met'
            else 'unknown'
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
    cast(coalesce(axis_mm, size_mm) as {{ clinical_double() }}) as value_numeric,
    cast(case when coalesce(axis_mm, size_mm) is not null then 'mm' end as {{ dbt.type_string() }}) as value_unit,
    cast(minimum_size_mm as {{ clinical_double() }}) as threshold,
    cast(null as {{ clinical_double() }}) as uln,
    cast(null as {{ dbt.type_string() }}) as uln_source,
    cast(case when coalesce(axis_mm, size_mm) is not null then '>=' end as {{ dbt.type_string() }})
        as comparator,

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
        when observation_id is null then 'tumor_measurement'
        when measurement_status = 'undecided' and method is null then 'imaging_method'
        when measurement_status = 'undecided' and not method_accepted then 'imaging_accepted_method'
        when measurement_status = 'undecided' then 'short_axis'
        else 'tumor_measurement'
    end as {{ dbt.type_string() }}) as missing_item,

    -- reason
    case
        when observation_id is null
            then 'No tumor measurement in the ' || cast(window_days as {{ dbt.type_string() }})
                || ' days to ' || {{ fmt_date(screening_date()) }}
        else
            case when is_nodal then 'Nodal lesion ' else 'Lesion ' end
            || case
                when axis_mm is not null and is_nodal then {{ fmt_num('axis_mm', 1) }} || ' mm short axis'
                when size_mm is not null and is_nodal then {{ fmt_num('size_mm', 1) }} || ' mm longest diameter'
                else coalesce({{ fmt_num('size_mm', 1) }} || ' mm', 'size unusable')
            end
            -- the method as the seed names it: a method code or text the seed does not know is
            -- sender text and is never printed
            || coalesce(' by ' || method, '')
            || ' on ' || {{ fmt_date('effective_date') }}
            || case
                when measurement_status = 'measurable' and minimum_size_mm is not null
                    then ' ≥ ' || {{ fmt_num('minimum_size_mm', 1) }} || ' mm: measurable'
                when measurement_status = 'not_measurable' and minimum_size_mm is not null
                    then ' < ' || {{ fmt_num('minimum_size_mm', 1) }} || ' mm: not measurable'
                else ': ' || lesion_note
            end
            || ' (' || cast(n_measurable as {{ dbt.type_string() }}) || ' of '
            || cast(n_lesions as {{ dbt.type_string() }})
            || case when n_lesions = 1 then ' measurement' else ' measurements' end
            || ' measurable'
            || case
                when n_undecided > 0
                    then ', ' || cast(n_undecided as {{ dbt.type_string() }}) || ' undecided'
                else ''
            end
            || case
                when n_unusable > 0
                    then ', ' || cast(n_unusable as {{ dbt.type_string() }}) || ' unusable'
                else ''
            end
            || ')'
            || case
                when status = 'unknown' and measurement_status = 'undecided' and method is null
                    and not is_nodal
                    then '; to confirm: the imaging method'
                when status = 'unknown' and measurement_status = 'undecided' and method is null
                    then '; to confirm: the imaging method and the short axis'
                when status = 'unknown' and measurement_status = 'undecided' and not method_accepted
                    then '; to confirm: a measurement by CT, MRI or caliper'
                when status = 'unknown' and measurement_status = 'undecided'
                    then '; to confirm: the short axis'
                else ''
            end
    end as reason,
    cast(null as {{ dbt.type_string() }}) as reason_detail

from joined
