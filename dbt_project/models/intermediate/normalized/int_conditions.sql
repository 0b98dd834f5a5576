-- int_conditions: one row per condition record (latest delivered version of each), codes
-- normalized, with whether it counts (docs/clinical-rules.md#counting-conditions): clinicalStatus
-- active/recurrence/relapse or absent, and verificationStatus not refuted/entered-in-error. The
-- onset-before-screening rule belongs to the criteria models (they know the screening date). A
-- condition sent with two codings (ICD-10-CM site + ICD-O-3 morphology) gives two rows, the second
-- with condition_id suffixed ':alt', so every concept match sees both codes.

with

latest_versions as (

    {{ latest_versions('conditions') }}

),

systems as (

    select * from {{ ref('code_system_aliases') }}

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
        {{ dbt.concat(["evidence_source", "':'", "record_id", "':alt'"]) }} as condition_id,
        coalesce(systems.code_system, {{ clean_lower('alt_code_system_raw') }}) as code_system,
        {{ normalize_code('alt_code_raw', "coalesce(systems.code_system, " ~ clean_lower('alt_code_system_raw') ~ ")") }} as code,
        alt_code_display as code_display,
        alt_code_system_raw as code_system_raw,
        alt_code_raw as code_raw,
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
    left join systems
        on {{ clean_lower('latest_versions.alt_code_system_raw') }} = systems.system_alias
    where latest_versions.alt_code_raw is not null

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
        -- dates (local, var('timezone'))
        {{ date_in_timezone('onset_at', timezone_name()) }} as onset_date,
        {{ date_in_timezone('recorded_at', timezone_name()) }} as recorded_date,
        {{ date_in_timezone('abatement_at', timezone_name()) }} as abatement_date,
        -- timestamps (naive UTC)
        onset_at,
        recorded_at,
        loaded_at
    from codings

)

select * from final
