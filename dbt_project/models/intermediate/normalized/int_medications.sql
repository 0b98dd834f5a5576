{{ config(
    materialized=incremental_materialization(),
    incremental_strategy='append',
    pre_hook="{{ incremental_delete_changed() }}",
) }}
-- depends_on: {{ ref('int_changed_patients') }}
-- int_medications: one row per medication record (latest delivered version of each) across
-- MedicationRequest/Statement/Administration and the CSV extract, with `drug_text` (display
-- and text, lowercased) for case-insensitive name matching
-- (docs/clinical-rules.md#counting-medications).

with

latest_versions as (

    {{ latest_versions('medications') }}

),

final as (

    select
        -- ids
        {{ dbt.concat(["evidence_source", "':'", "record_id"]) }} as medication_id,
        patient_mrn,
        evidence_source,
        record_id as evidence_id,
        source_file,
        resource_type,
        -- code
        code_system,
        code,
        code_display,
        code_text,
        lower(trim(
            {{ dbt.concat(["coalesce(code_display, '')", "' '", "coalesce(code_text, '')"]) }}
        )) as drug_text,
        -- status
        status,
        intent,
        record_hash,
        -- dates (local, var('timezone'))
        {{ date_in_timezone('start_at', timezone_name()) }} as start_date,
        {{ date_in_timezone('end_at', timezone_name()) }} as end_date,
        -- timestamps (naive UTC)
        start_at,
        end_at,
        loaded_at
    from latest_versions

)

select * from final
