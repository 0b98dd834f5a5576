-- Rule performance_status (docs/clinical-rules.md#performance-status): on the latest assessment
-- date, ECOG <= ecog_max, or Karnofsky (Lansky for young patients) >= karnofsky_min, each judged on
-- the scale it was recorded in. ECOG and KPS the same day with different outcomes -> review. The
-- equivalence table is never used to decide (display only, in screening_results).
with

population as (

    select * from {{ ref('int_screening__population') }}

),

criteria as (

    select distinct
        trial_id,
        criterion_id,
        label,
        ecog_max,
        karnofsky_min,
        lansky_under_age,
        window_days
    from {{ ref('stg_config__trial_criteria') }}
    where rule = 'performance_status'

),

performance as (

    select * from {{ ref('int_performance__status') }}

),

joined as (

    select
        criteria.*,
        population.patient_mrn,
        population.age_years,
        performance.assessment_date,
        performance.ecog,
        performance.ecog_issue,
        performance.ecog_evidence_source,
        performance.ecog_evidence_id,
        performance.ecog_effective_at,
        performance.ecog_observation_id,
        performance.karnofsky,
        performance.karnofsky_issue,
        performance.karnofsky_scale,
        performance.karnofsky_evidence_source,
        performance.karnofsky_evidence_id,
        performance.karnofsky_effective_at,
        performance.karnofsky_observation_id,
        {{ comparator_status('performance.ecog', 'null', "'<='", 'criteria.ecog_max') }} as ecog_status,
        {{ comparator_status('performance.karnofsky', 'null', "'>='", 'criteria.karnofsky_min') }}
            as karnofsky_status
    from criteria
    inner join population
        on criteria.trial_id = population.trial_id
    left join performance
        on criteria.trial_id = performance.trial_id
        and population.patient_mrn = performance.patient_mrn

),

decided as (

    select
        *,
        case
            when assessment_date is null then 'unknown'
            when ecog_status is not null and karnofsky_status is not null
                then case when ecog_status = karnofsky_status then ecog_status else 'review' end
            when ecog_status is not null then ecog_status
            when karnofsky_status is not null then karnofsky_status
            else 'unknown'
        end as status,
        case
            when karnofsky_scale = 'lansky' then 'Lansky'
            else 'KPS'
        end as karnofsky_label
    from joined

),

described as (

    select
        *,
        case
            when ecog_observation_id is null then null
            when ecog is null then 'ECOG unusable (' || coalesce(ecog_issue, 'no value') || ')'
            else 'ECOG ' || {{ fmt_num('ecog', 0) }}
                || case ecog_status when 'met' then ' ≤ ' else ' > ' end || {{ fmt_num('ecog_max', 0) }}
        end as ecog_text,
        case
            when karnofsky_observation_id is null then null
            when karnofsky is null then karnofsky_label || ' unusable (' || coalesce(karnofsky_issue, 'no value') || ')'
            else karnofsky_label || ' ' || {{ fmt_num('karnofsky', 0) }}
                || case karnofsky_status when 'met' then ' ≥ ' else ' < ' end || {{ fmt_num('karnofsky_min', 0) }}
        end as karnofsky_text
    from decided

)

select
    -- ids
    trial_id,
    criterion_id,
    patient_mrn,

    -- decision
    status,
    cast(coalesce(ecog, karnofsky) as {{ clinical_double() }}) as value_numeric,
    cast(case
        when ecog is not null then 'ECOG'
        when karnofsky is not null then karnofsky_label
    end as {{ dbt.type_string() }}) as value_unit,
    cast(
        case when ecog is not null then ecog_max when karnofsky is not null then karnofsky_min end
        as {{ clinical_double() }}
    ) as threshold,
    cast(null as {{ clinical_double() }}) as uln,
    cast(null as {{ dbt.type_string() }}) as uln_source,
    cast(case when ecog is not null then '<=' when karnofsky is not null then '>=' end as {{ dbt.type_string() }})
        as comparator,

    -- evidence: the ECOG record when there is one, else the Karnofsky/Lansky record
    case when ecog_observation_id is not null then ecog_evidence_source else karnofsky_evidence_source end
        as evidence_source,
    case when ecog_observation_id is not null then ecog_evidence_id else karnofsky_evidence_id end
        as evidence_id,
    cast(
        case when ecog_observation_id is not null then ecog_effective_at else karnofsky_effective_at end
        as {{ dbt.type_timestamp() }}
    ) as evidence_at,
    cast(assessment_date as date) as evidence_date,
    case when status <> 'unknown' then {{ valid_until('assessment_date', 'window_days') }} end as valid_until,
    cast(case when status = 'unknown' then 'performance_status' end as {{ dbt.type_string() }}) as missing_item,

    -- reason
    case
        when assessment_date is null
            then 'No ECOG or Karnofsky/Lansky assessment in the ' || cast(window_days as {{ dbt.type_string() }})
                || ' days to ' || {{ fmt_date(screening_date()) }}
        when status = 'review'
            then ecog_text || ' but ' || karnofsky_text || ' on ' || {{ fmt_date('assessment_date') }}
                || ': the scales disagree, a clinician decides'
        else coalesce(ecog_text, '') || case when ecog_text is not null and karnofsky_text is not null then ' and ' else '' end
            || coalesce(karnofsky_text, '') || ' on ' || {{ fmt_date('assessment_date') }}
            || case
                when karnofsky_scale = 'karnofsky' and age_years < lansky_under_age
                    then ' (Karnofsky recorded for a patient under ' || {{ fmt_num('lansky_under_age', 0) }} || '; Lansky expected)'
                else ''
            end
    end as reason,
    cast(null as {{ dbt.type_string() }}) as reason_detail

from described
