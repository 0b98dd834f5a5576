-- Rule renal (docs/clinical-rules.md#renal): serum creatinine <= uln_multiplier x ULN, OR
-- Cockcroft-Gault creatinine clearance >= the trial's threshold (config.trial_settings cg_compare:
-- the normalized mL/min/1.73 m2 value, or the absolute mL/min value). Met when either arm is met,
-- not_met when both are not met, else unknown. For sex other/unknown the CG arm decides only when
-- both sexes agree. Both CrCl values are named in the reason whenever computable; under 18 the
-- reason says CG is an extrapolation. A creatinine comparator flips for CG
-- (creatinine < v means CrCl > the computed value).
with

population as (

    select * from {{ ref('int_screening__population') }}

),

criteria as (

    select distinct
        trial_id,
        criterion_id,
        label,
        analyte,
        uln_multiplier,
        window_days
    from {{ ref('stg_config__trial_criteria') }}
    where rule = 'renal'

),

clearance as (

    select * from {{ ref('int_renal__creatinine_clearance') }}

),

joined as (

    select
        criteria.criterion_id,
        criteria.label,
        criteria.uln_multiplier,
        criteria.window_days,
        population.height_adult_age_years,
        population.height_child_window_days,
        population.weight_window_days,
        clearance.*,
        {{ clinical_round('criteria.uln_multiplier * clearance.creatinine_uln') }} as creatinine_limit,
        case when clearance.cg_compare = 'absolute' then clearance.crcl_male_ml_min
            else clearance.crcl_male_ml_min_1_73m2
        end as cg_male_compared,
        case when clearance.cg_compare = 'absolute' then clearance.crcl_female_ml_min
            else clearance.crcl_female_ml_min_1_73m2
        end as cg_female_compared,
        case when clearance.cg_compare = 'absolute' then 'mL/min'
            else 'mL/min/{1.73_m2}'
        end as cg_unit
    from criteria
    inner join population
        on criteria.trial_id = population.trial_id
    inner join clearance
        on criteria.trial_id = clearance.trial_id
        and population.patient_mrn = clearance.patient_mrn

),

arms as (

    select
        *,
        case
            when creatinine_issue is not null then null
            else {{ comparator_status('creatinine_mg_dl', 'creatinine_comparator', "'<='", 'creatinine_limit') }}
        end as creatinine_status,
        {{ comparator_status('cg_male_compared', flip_comparator('creatinine_comparator'), "'>='", 'cg_threshold') }}
            as cg_male_status,
        {{ comparator_status('cg_female_compared', flip_comparator('creatinine_comparator'), "'>='", 'cg_threshold') }}
            as cg_female_status
    from joined

),

combined as (

    select
        *,
        case sex
            when 'male' then cg_male_status
            when 'female' then cg_female_status
            else {{ agree_status('cg_male_status', 'cg_female_status') }}
        end as cg_status,
        case sex
            when 'male' then cg_male_compared
            when 'female' then cg_female_compared
            else least(cg_male_compared, cg_female_compared)
        end as cg_compared
    from arms

),

decided as (

    select
        *,
        case
            when creatinine_status = 'met' or cg_status = 'met' then 'met'
            when creatinine_status = 'not_met' and cg_status = 'not_met' then 'not_met'
            else 'unknown'
        end as status,
        -- the arm the decision rests on: creatinine unless only CG decided it
        case
            when creatinine_status = 'met' then 'creatinine'
            when cg_status = 'met' then 'cg'
            else 'creatinine'
        end as deciding_arm
    from combined

),

described as (

    select
        *,
        case
            when creatinine_mg_dl is null then ''
            else 'creatinine ' || {{ comparator_prefix('creatinine_comparator') }}
                || {{ fmt_num('creatinine_mg_dl') }} || ' mg/dL'
                || case when creatinine_uln is not null
                        then ' (' || {{ fmt_num('creatinine_x_uln') }} || ' × ULN ' || {{ fmt_num('creatinine_uln') }}
                            || ', ' || creatinine_uln_source || ' range)'
                    else ' (no ULN)'
                end
                || ' on ' || {{ fmt_local_date('creatinine_effective_at') }}
                || case creatinine_status
                    when 'met' then ' ≤ '
                    when 'not_met' then ' > '
                    else ' vs '
                end || {{ fmt_num('uln_multiplier') }} || ' × ULN'
        end as creatinine_text,
        case
            when sex in ('male', 'female')
                then
                    'CrCl ' || coalesce({{ fmt_num('crcl_ml_min', 0) }}, 'unknown') || ' mL/min, '
                    || coalesce(
                        {{ fmt_num('crcl_ml_min_1_73m2', 0) }} || ' mL/min/1.73 m²',
                        'unknown mL/min/1.73 m² (no height)'
                    )
            else
                'CrCl (sex ' || coalesce(sex, 'unknown') || ', computed as male / female) '
                || coalesce({{ fmt_num('crcl_male_ml_min', 0) }}, '?') || ' / '
                || coalesce({{ fmt_num('crcl_female_ml_min', 0) }}, '?') || ' mL/min, '
                || coalesce(
                    {{ fmt_num('crcl_male_ml_min_1_73m2', 0) }} || ' / '
                    || {{ fmt_num('crcl_female_ml_min_1_73m2', 0) }} || ' mL/min/1.73 m²',
                    'unknown mL/min/1.73 m² (no height)'
                )
        end
        || ' (' || cg_weight_rule || ' weight '
        || coalesce(
            {{ fmt_num('weight_kg', 1) }} || ' kg',
            'unusable (' || weight_issue || ')',
            'missing in the window'
        ) || ')'
        || case cg_status
            when 'met' then '; CG ≥ '
            when 'not_met' then '; CG < '
            else '; CG undecided vs '
        end || {{ fmt_num('cg_threshold') }} || ' '
        || {{ unit_display('cg_unit') }}
        || case
            when sex not in ('male', 'female') and cg_male_status <> cg_female_status
                then ' (the two sexes disagree)'
            else ''
        end
        || case
            when age_years < height_adult_age_years
                then '; Cockcroft-Gault is an extrapolation under 18 (derived in adults)'
            else ''
        end as cg_text
    from decided

)

select
    -- ids
    trial_id,
    criterion_id,
    patient_mrn,

    -- decision
    status,
    cast(
        case when deciding_arm = 'cg' then cg_compared else creatinine_mg_dl end
        as {{ clinical_double() }}
    ) as value_numeric,
    cast(
        case when deciding_arm = 'cg' then cg_unit else 'mg/dL' end
        as {{ dbt.type_string() }}
    ) as value_unit,
    cast(
        case when deciding_arm = 'cg' then cg_threshold else creatinine_limit end
        as {{ clinical_double() }}
    ) as threshold,
    cast(case when deciding_arm = 'creatinine' then creatinine_uln end as {{ clinical_double() }}) as uln,
    cast(
        case when deciding_arm = 'creatinine' then creatinine_uln_source end
        as {{ dbt.type_string() }}
    ) as uln_source,
    cast(case when deciding_arm = 'cg' then '>=' else '<=' end as {{ dbt.type_string() }}) as comparator,

    -- evidence: the creatinine result both arms rest on
    creatinine_evidence_source as evidence_source,
    creatinine_evidence_id as evidence_id,
    cast(creatinine_effective_at as {{ dbt.type_timestamp() }}) as evidence_at,
    {{ date_in_timezone('creatinine_effective_at', var('timezone')) }} as evidence_date,
    -- the earliest expiry of the inputs the decision rests on: creatinine alone when its arm
    -- met; else creatinine, weight and (normalized CG under the adult age) height
    case
        when status = 'unknown' then null
        when status = 'met' and deciding_arm = 'creatinine'
            then {{ valid_until(date_in_timezone('creatinine_effective_at', var('timezone')), 'window_days') }}
        else
            least(
                {{ valid_until(date_in_timezone('creatinine_effective_at', var('timezone')), 'window_days') }},
                {{ valid_until('weight_date', 'weight_window_days') }},
                case
                    when cg_compare <> 'absolute' and age_years < height_adult_age_years
                        then {{ valid_until('height_date', 'height_child_window_days') }}
                end
            )
    end as valid_until,
    -- what would decide an unknown (key of the seed criterion_next_steps)
    cast(case
        when status <> 'unknown' then null
        when creatinine_observation_id is null or creatinine_issue is not null or creatinine_mg_dl is null
            then 'creatinine'
        -- a comparator creatinine (">4.0") computes no clearance: an exact value decides
        when creatinine_comparator is not null then 'creatinine'
        when weight_kg is null then 'weight'
        when cg_compare <> 'absolute' and height_cm is null then 'height'
        when creatinine_uln is null then 'reference_range'
        when sex not in ('male', 'female') or sex is null then 'sex'
        else 'creatinine'
    end as {{ dbt.type_string() }}) as missing_item,

    -- reason
    case
        when creatinine_observation_id is null
            then 'No ' || label || ' (creatinine) result in the ' || cast(window_days as {{ dbt.type_string() }})
                || ' days to ' || {{ fmt_date(screening_date()) }}
        when creatinine_issue is not null or creatinine_mg_dl is null
            then 'Latest creatinine on ' || {{ fmt_local_date('creatinine_effective_at') }} || ' is unusable ('
                || coalesce(creatinine_issue, 'no value') || ': '
                || coalesce({{ double_text('creatinine_value_raw') }}, '') || ' '
                -- a unit outside the seed's aliases is sender text: restricted only
                || case
                    when creatinine_issue = 'unmapped_unit' then '(unit withheld)'
                    else coalesce(creatinine_unit_raw, '')
                end
                || '); older results are not used'
        else
            case status
                when 'met' then 'Met: '
                when 'not_met' then 'Not met: '
                else 'Undecided: '
            end || creatinine_text || '; ' || cg_text
    end as reason,
    -- coordinators only (restricted.criterion_evidence): the unit as sent
    case
        when creatinine_observation_id is not null and creatinine_issue = 'unmapped_unit'
            then 'Latest creatinine on ' || {{ fmt_local_date('creatinine_effective_at') }} || ' is unusable ('
                || creatinine_issue || ': ' || coalesce({{ double_text('creatinine_value_raw') }}, '') || ' '
                || coalesce(creatinine_unit_raw, '') || '); older results are not used'
    end as reason_detail

from described
