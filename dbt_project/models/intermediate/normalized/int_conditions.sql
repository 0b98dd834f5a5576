{{ config(
    materialized=incremental_materialization(),
    incremental_strategy='append',
    pre_hook="{{ incremental_delete_changed() }}",
) }}
-- depends_on: {{ ref('int_changed_patients') }}
-- int_conditions: one row per condition record (latest delivered version of each), codes
-- normalized, with whether it counts (docs/clinical-rules.md#counting-conditions): clinicalStatus
-- active/recurrence/relapse or absent, and verificationStatus not refuted/entered-in-error. The
-- onset-before-screening rule belongs to the criteria models (they know the screening date). A
-- condition sent with several codings (ICD-10-CM site + ICD-O-3 morphology + SNOMED) gives one
-- row per distinct coding - the entity's own, ':alt', and ':<seq>' from raw.<feed>_codings
-- (docs/decisions.md "Every coding is kept") - so every concept match sees every code.

with

latest_versions as (

    {{ latest_versions('conditions') }}

),

systems as (

    select * from {{ ref('code_system_aliases') }}

),

child_codings as (

    select * from {{ ref('stg_fhir__codings') }}
    where entity = 'conditions'
    union all
    select * from {{ ref('stg_hl7__codings') }}
    where entity = 'conditions'
    union all
    select * from {{ ref('stg_csv__codings') }}
    where entity = 'conditions'

),

codings as (

    select
        {{ dbt.concat(["evidence_source", "':'", "record_id"]) }} as condition_id,
        code_system,
        code,
        code_display,
        code_system_raw,
        code_raw,
        patient_mrn,
        evidence_source,
        record_id,
        source_file,
        code_text,
        clinical_status,
        verification_status,
        onset_at,
        recorded_at,
        abatement_at,
        loaded_at
    from latest_versions
    union all
    select
        {{ dbt.concat(["latest_versions.evidence_source", "':'", "latest_versions.record_id", "':alt'"]) }} as condition_id,
        coalesce(systems.code_system, {{ clean_lower('latest_versions.alt_code_system_raw') }}) as code_system,
        {{ normalize_code('latest_versions.alt_code_raw', "coalesce(systems.code_system, " ~ clean_lower('latest_versions.alt_code_system_raw') ~ ")") }} as code,
        latest_versions.alt_code_display as code_display,
        latest_versions.alt_code_system_raw as code_system_raw,
        latest_versions.alt_code_raw as code_raw,
        latest_versions.patient_mrn,
        latest_versions.evidence_source,
        latest_versions.record_id,
        latest_versions.source_file,
        latest_versions.code_text,
        latest_versions.clinical_status,
        latest_versions.verification_status,
        latest_versions.onset_at,
        latest_versions.recorded_at,
        latest_versions.abatement_at,
        latest_versions.loaded_at
    from latest_versions
    left join systems
        on {{ clean_lower('latest_versions.alt_code_system_raw') }} = systems.system_alias
    where latest_versions.alt_code_raw is not null
    union all
    -- every other coding of the same record version (raw.<feed>_codings)
    select
        {{ dbt.concat(["latest_versions.evidence_source", "':'", "latest_versions.record_id", "':'", "cast(child.seq as " ~ dbt.type_string() ~ ")"]) }} as condition_id,
        child.code_system,
        child.code,
        child.code_display,
        child.code_system_raw,
        child.code_raw,
        latest_versions.patient_mrn,
        latest_versions.evidence_source,
        latest_versions.record_id,
        latest_versions.source_file,
        latest_versions.code_text,
        latest_versions.clinical_status,
        latest_versions.verification_status,
        latest_versions.onset_at,
        latest_versions.recorded_at,
        latest_versions.abatement_at,
        latest_versions.loaded_at
    from latest_versions
    inner join child_codings as child
        on latest_versions.evidence_source = child.evidence_source
        and latest_versions.record_id = child.record_id
        and latest_versions.record_hash = child.record_hash
    where child.code is not null

),

deduplicated as (

    -- one row per (record, system, code): the entity's own coding first
    select *
    from (
        select
            codings.*,
            row_number() over (
                partition by codings.evidence_source, codings.record_id, codings.code_system, codings.code
                order by length(codings.condition_id), codings.condition_id
            ) as coding_rank
        from codings
    ) as ranked
    where coding_rank = 1

),

final as (

    select
        -- ids
        condition_id,
        patient_mrn,
        evidence_source,
        record_id as evidence_id,
        source_file,
        -- code
        code_system,
        code,
        code_display,
        code_text,
        code_system_raw,
        code_raw,
        -- status
        clinical_status,
        verification_status,
        (
            coalesce(clinical_status in ('active', 'recurrence', 'relapse'), true)
            and coalesce(verification_status not in ('refuted', 'entered-in-error'), true)
        ) as is_counting,
        -- refuted / entered in error: never counts, not even for a lifelong concept
        coalesce(verification_status in ('refuted', 'entered-in-error'), false) as is_refuted,
        -- dates (local, var('timezone'))
        {{ date_in_timezone('onset_at', timezone_name()) }} as onset_date,
        {{ date_in_timezone('recorded_at', timezone_name()) }} as recorded_date,
        {{ date_in_timezone('abatement_at', timezone_name()) }} as abatement_date,
        -- timestamps (naive UTC)
        onset_at,
        recorded_at,
        loaded_at
    from deduplicated

)

select * from final
