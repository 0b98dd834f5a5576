-- Performance status per (trial, patient) on the latest assessment date in the window
-- (docs/clinical-rules.md#performance-status): the ECOG and the Karnofsky/Lansky score recorded
-- that day (latest of each), each judged on its own scale by the criterion model. Lansky arrives as
-- analyte 'lansky' or as a Karnofsky-coded result with scale 'lansky'. The equivalent on the other
-- scale comes from seed ecog_karnofsky_equivalence, for display only.
with

observations as (

    select * from {{ ref('int_observations') }}

),

population as (

    select * from {{ ref('int_screening__population') }}

),

equivalence as (

    select * from {{ ref('ecog_karnofsky_equivalence') }}

),

assessments as (

    select
        population.trial_id,
        observations.*,
        case when observations.analyte = 'ecog' then 'ecog' else 'karnofsky' end as scale_family
    from observations
    inner join population
        on observations.patient_mrn = population.patient_mrn
    where observations.analyte in ('ecog', 'karnofsky', 'lansky')
        and observations.effective_date <= {{ screening_date() }}
        and {{ dbt.datediff('observations.effective_date', screening_date(), 'day') }}
        <= population.performance_window_days

),

latest_date as (

    select
        trial_id,
        patient_mrn,
        max(effective_date) as assessment_date
    from assessments
    group by trial_id, patient_mrn

),

ranked as (

    -- the latest result of each scale on the latest assessment date
    select
        assessments.*,
        row_number() over (
            partition by assessments.trial_id, assessments.patient_mrn, assessments.scale_family
            order by
                assessments.effective_at desc,
                assessments.issued_at desc nulls last,
                case when assessments.value_issue is null then 0 else 1 end,
                assessments.observation_id
        ) as recency_rank
    from assessments
    inner join latest_date
        on assessments.trial_id = latest_date.trial_id
        and assessments.patient_mrn = latest_date.patient_mrn
        and assessments.effective_date = latest_date.assessment_date

),

ecog as (

    select * from ranked
    where scale_family = 'ecog' and recency_rank = 1

),

karnofsky as (

    select * from ranked
    where scale_family = 'karnofsky' and recency_rank = 1

),

combined as (

    select
        latest_date.trial_id,
        latest_date.patient_mrn,
        latest_date.assessment_date,

        ecog.observation_id as ecog_observation_id,
        ecog.evidence_source as ecog_evidence_source,
        ecog.evidence_id as ecog_evidence_id,
        ecog.effective_at as ecog_effective_at,
        ecog.value_canonical as ecog,
        ecog.value_issue as ecog_issue,

        karnofsky.observation_id as karnofsky_observation_id,
        karnofsky.evidence_source as karnofsky_evidence_source,
        karnofsky.evidence_id as karnofsky_evidence_id,
        karnofsky.effective_at as karnofsky_effective_at,
        karnofsky.value_canonical as karnofsky,
        karnofsky.value_issue as karnofsky_issue,
        case
            when karnofsky.scale = 'lansky' or karnofsky.analyte = 'lansky' then 'lansky'
            else 'karnofsky'
        end as karnofsky_scale

    from latest_date
    left join ecog
        on latest_date.trial_id = ecog.trial_id
        and latest_date.patient_mrn = ecog.patient_mrn
    left join karnofsky
        on latest_date.trial_id = karnofsky.trial_id
        and latest_date.patient_mrn = karnofsky.patient_mrn

)

select
    -- ids
    combined.trial_id,
    combined.patient_mrn,

    -- ECOG
    combined.ecog_observation_id,
    combined.ecog_evidence_source,
    combined.ecog_evidence_id,
    combined.ecog_effective_at,
    combined.ecog,
    combined.ecog_issue,

    -- Karnofsky / Lansky
    combined.karnofsky_observation_id,
    combined.karnofsky_evidence_source,
    combined.karnofsky_evidence_id,
    combined.karnofsky_effective_at,
    combined.karnofsky,
    combined.karnofsky_issue,
    case when combined.karnofsky is not null then combined.karnofsky_scale end as karnofsky_scale,

    -- display-only equivalents (seed ecog_karnofsky_equivalence)
    kps_to_ecog.ecog as ecog_equivalent,
    case
        when ecog_to_kps.ecog is not null
            then cast(ecog_to_kps.karnofsky_low as {{ dbt.type_string() }})
                || '-' || cast(ecog_to_kps.karnofsky_high as {{ dbt.type_string() }})
    end as karnofsky_equivalent,

    -- dates
    combined.assessment_date

from combined
left join equivalence as kps_to_ecog
    on combined.karnofsky >= kps_to_ecog.karnofsky_low
    and combined.karnofsky <= kps_to_ecog.karnofsky_high
left join equivalence as ecog_to_kps
    on combined.ecog = ecog_to_kps.ecog
