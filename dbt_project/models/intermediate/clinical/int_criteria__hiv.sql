-- Rule hiv (docs/clinical-rules.md#hiv): no HIV on record -> met; HIV -> met only with active
-- antiretroviral therapy and an undetectable viral load within the HIV window; HIV with a
-- detectable viral load -> not_met; undetectable with no ART on record -> review (confirm
-- antiretroviral therapy: absence is not evidence); HIV without a usable viral load in the window
-- (or "<N" above the limit) -> unknown. Status inputs: int_hiv__status.
with

criteria as (

    select distinct
        trial_id,
        criterion_id,
        label,
        window_days
    from {{ ref('stg_config__trial_criteria') }}
    where rule = 'hiv'

),

hiv as (

    select * from {{ ref('int_hiv__status') }}

),

joined as (

    select
        criteria.criterion_id,
        criteria.label,
        criteria.window_days,
        hiv.*,
        case
            when not hiv.has_hiv then 'met'
            when hiv.viral_load_observation_id is null then 'unknown'
            when hiv.viral_load_class in ('unusable', 'undecidable') then 'unknown'
            when hiv.viral_load_class = 'detectable' then 'not_met'
            -- absence is not evidence: ART is often dispensed by an outside pharmacy, so an
            -- undetectable load with no ART on record asks to confirm therapy (issue 11)
            when not hiv.on_active_art then 'review'
            else 'met'
        end as status
    from criteria
    inner join hiv
        on criteria.trial_id = hiv.trial_id

),

described as (

    select
        *,
        case
            when hiv_condition_id is not null
                then 'HIV coded (' || coalesce(hiv_condition_code, '') || ')'
            else 'HIV-1 RNA detected on ' || {{ fmt_date('hiv_detectable_viral_load_date') }}
        end as hiv_text,
        case
            when viral_load_observation_id is null then null
            when viral_load_class = 'unusable' then 'latest viral load unusable (' || coalesce(viral_load_issue, 'no value') || ')'
            when viral_load_qualitative = 'detected_below_lloq'
                then 'viral load detected below the limit of quantification on '
                    || {{ fmt_local_date('viral_load_effective_at') }}
                    || case viral_load_class
                        when 'undetectable' then ' (undetectable, < ' || {{ fmt_num('undetectable_below', 0) }} || ')'
                        else ' (cannot tell whether below ' || {{ fmt_num('undetectable_below', 0) }} || ')'
                    end
            when viral_load_qualitative = 'not_detected' and viral_load_copies_ml is null
                then 'viral load not detected on ' || {{ fmt_local_date('viral_load_effective_at') }}
                    || ' (undetectable, < ' || {{ fmt_num('undetectable_below', 0) }} || ')'
            when viral_load_qualitative = 'detected' and viral_load_copies_ml is null
                then 'viral load detected, not quantified, on ' || {{ fmt_local_date('viral_load_effective_at') }}
                    || ' (cannot tell whether below ' || {{ fmt_num('undetectable_below', 0) }} || ')'
            else 'viral load ' || {{ comparator_prefix('viral_load_comparator') }}
                || coalesce({{ fmt_num('viral_load_copies_ml', 0) }}, 'not detected') || ' copies/mL on '
                || {{ fmt_local_date('viral_load_effective_at') }}
                || case viral_load_class
                    when 'undetectable' then ' (undetectable, < ' || {{ fmt_num('undetectable_below', 0) }} || ')'
                    when 'detectable' then ' (detectable, limit ' || {{ fmt_num('undetectable_below', 0) }} || ')'
                    else ' (cannot tell whether below ' || {{ fmt_num('undetectable_below', 0) }} || ')'
                end
        end as viral_load_text,
        -- coordinators only: an unreadable viral-load text as sent
        case
            when viral_load_observation_id is not null and viral_load_issue = 'non_numeric'
                then 'latest viral load unusable (non_numeric: "' || coalesce(viral_load_value_text, '') || '")'
        end as viral_load_detail,
        case
            when on_active_art then 'on active ART (' || coalesce(art_drug_label, 'antiretroviral') || ')'
            else 'no antiretroviral therapy on record: confirm antiretroviral therapy'
        end as art_text,
        -- coordinators only: the drug text as sent (docs/decisions.md "Free text from source
        -- records")
        case
            when on_active_art then 'on active ART (' || coalesce(art_drug, 'antiretroviral') || ')'
            else 'no antiretroviral therapy on record: confirm antiretroviral therapy'
        end as art_detail
    from joined

)

select
    -- ids
    trial_id,
    criterion_id,
    patient_mrn,

    -- decision
    status,
    cast(viral_load_copies_ml as {{ clinical_double() }}) as value_numeric,
    cast(case when viral_load_observation_id is not null then '{copies}/mL' end as {{ dbt.type_string() }})
        as value_unit,
    cast(case when has_hiv then undetectable_below end as {{ clinical_double() }}) as threshold,
    cast(null as {{ clinical_double() }}) as uln,
    cast(null as {{ dbt.type_string() }}) as uln_source,
    cast(case when has_hiv then '<' end as {{ dbt.type_string() }}) as comparator,

    -- evidence: the viral load behind the decision, else the HIV diagnosis
    case when has_hiv then coalesce(viral_load_evidence_source, hiv_condition_evidence_source) end
        as evidence_source,
    case when has_hiv then coalesce(viral_load_evidence_id, hiv_condition_evidence_id) end
        as evidence_id,
    cast(
        case when has_hiv then coalesce(viral_load_effective_at, cast(hiv_condition_date as {{ dbt.type_timestamp() }})) end
        as {{ dbt.type_timestamp() }}
    ) as evidence_at,
    case
        when has_hiv and viral_load_effective_at is not null
            then {{ date_in_timezone('viral_load_effective_at', var('timezone')) }}
        when has_hiv then cast(hiv_condition_date as date)
    end as evidence_date,
    -- no HIV on record does not expire; a decision on a viral load lasts its window
    case
        when has_hiv and status <> 'unknown' and viral_load_effective_at is not null
            then {{ valid_until(date_in_timezone('viral_load_effective_at', var('timezone')), 'window_days') }}
    end as valid_until,
    cast(case when status = 'unknown' then 'hiv_viral_load' end as {{ dbt.type_string() }}) as missing_item,

    -- reason
    case
        when not has_hiv then 'No HIV diagnosis (B20, Z21) or detectable HIV-1 viral load on record'
        when viral_load_observation_id is null
            then hiv_text || '; no viral load in the ' || cast(window_days as {{ dbt.type_string() }})
                || ' days to ' || {{ fmt_date(screening_date()) }} || '; ' || art_text
        else hiv_text || '; ' || viral_load_text || '; ' || art_text
    end as reason,
    case
        when not has_hiv then null
        when viral_load_detail is not null then hiv_text || '; ' || viral_load_detail || '; ' || art_detail
        when not on_active_art then null
        when viral_load_observation_id is null
            then hiv_text || '; no viral load in the ' || cast(window_days as {{ dbt.type_string() }})
                || ' days to ' || {{ fmt_date(screening_date()) }} || '; ' || art_detail
        else hiv_text || '; ' || viral_load_text || '; ' || art_detail
    end as reason_detail

from described
