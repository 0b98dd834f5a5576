{#
    Column lists shared by the staging models of the three feeds (fhir, hl7, csv). The raw
    tables of an entity have identical columns (include/trialscreen/schema.py), so each
    entity's renaming, casting and cleaning is written once here and every
    stg_<feed>__<entity> model reads the same way:

        source (raw table) -> [fhir: patient_ref resolved to the MRN] -> renamed (these columns)

    Arguments: `feed` (literal evidence_source), `patient_mrn` (SQL expression for the MRN),
    `status_default` (status assumed when the feed sent none; SQL literal or null).
    The models alias the raw table `source` and the joined code_system_aliases seed
    `systems` (on the entity's code-system column).
    Timestamps: raw keeps the wall clock as sent and its offset; staging gives the instant
    as a naive UTC timestamp (instant_utc, macros/timezones.sql), so every later model reads
    naive UTC and takes local dates with date_in_timezone.
#}

{% macro stg_lineage_columns(feed, patient_mrn) -%}
        -- lineage
        '{{ feed }}' as evidence_source,
        {{ clean_text('source.record_id') }} as record_id,
        source.source_file,
        cast(source.source_position as {{ dbt.type_bigint() }}) as source_position,
        source.record_hash,
        source.run_id,
        cast(source.loaded_at as {{ dbt.type_timestamp() }}) as loaded_at,
        -- the ingest run that landed it (incremental nights: macros/incremental.sql)
        cast(source.load_id as {{ dbt.type_bigint() }}) as load_id,
        -- patient (an MRN retired by a merge counts as its surviving MRN: surviving_mrn)
        {{ clean_text('source.patient_ref') }} as patient_ref,
        {{ surviving_mrn(patient_mrn) }} as patient_mrn,
{%- endmacro %}

{#- FHIR status vocabulary (docs/clinical-rules.md#counting-results): the one status mapping.
    Raw keeps the status as sent (docs/decisions.md, "Result statuses map in staging"); this
    maps HL7 OBX-11 letters (table 0085, as in the HL7 v2-to-FHIR concept map) and spelling
    variants; anything else is kept lowercased. -#}
{% macro normalize_result_status(column, status_default='null') -%}
    case {{ clean_lower(column) }}
        when 'f' then 'final'
        when 'u' then 'final'
        when 'c' then 'corrected'
        when 'a' then 'amended'
        when 'p' then 'preliminary'
        when 'r' then 'preliminary'
        when 's' then 'preliminary'
        when 'i' then 'registered'
        when 'o' then 'registered'
        when 'x' then 'cancelled'
        when 'n' then 'cancelled'
        when 'canceled' then 'cancelled'
        when 'd' then 'entered-in-error'
        when 'w' then 'entered-in-error'
        when 'entered in error' then 'entered-in-error'
        when 'entered_in_error' then 'entered-in-error'
        else coalesce({{ clean_lower(column) }}, {{ status_default }})
    end
{%- endmacro %}

{% macro stg_patient_columns(feed, patient_mrn) -%}
        {{ stg_lineage_columns(feed, patient_mrn) }}
        -- identity
        {{ clean_text('source.family_name') }} as family_name,
        {{ clean_text('source.given_name') }} as given_name,
        cast(source.birth_date as date) as birth_date,
        case {{ clean_lower('source.sex') }}
            when 'male' then 'male'
            when 'm' then 'male'
            when 'female' then 'female'
            when 'f' then 'female'
            when 'other' then 'other'
            when 'o' then 'other'
            else 'unknown'
        end as sex,
        -- timestamps
        {{ instant_utc('source.deceased_at', 'source.deceased_at_offset_min') }} as deceased_at
{%- endmacro %}

{% macro stg_observation_columns(feed, patient_mrn, status_default='null') -%}
        {{ stg_lineage_columns(feed, patient_mrn) }}
        -- observation code
        {{ clean_lower('source.category') }} as category,
        {{ clean_text('source.loinc') }} as loinc,
        upper({{ clean_text('source.local_code') }}) as local_code,
        {{ clean_text('source.local_system') }} as local_system,
        -- the sender that keys local codes (seed local_lab_codes facility), uppercased
        upper({{ clean_text('source.facility') }}) as facility,
        {{ clean_text('source.code_display') }} as code_display,
        -- value
        {{ clean_lower('source.value_type') }} as value_type,
        cast(source.value_numeric as {{ type_double() }}) as value_numeric,
        case
            when {{ clean_text('source.value_comparator') }} in ('<', '<=', '>', '>=')
                then {{ clean_text('source.value_comparator') }}
        end as value_comparator,
        {{ clean_text('source.value_unit') }} as unit_text,
        {{ clean_text('source.value_unit_code') }} as unit_code,
        {{ clean_text('source.value_code') }} as value_code,
        coalesce(systems.code_system, {{ clean_lower('source.value_code_system') }}) as value_code_system,
        {{ clean_text('source.value_text') }} as value_text,
        -- reference range (the result's own unit)
        cast(source.ref_low as {{ type_double() }}) as ref_low,
        cast(source.ref_high as {{ type_double() }}) as ref_high,
        {{ clean_text('source.ref_text') }} as ref_text,
        upper({{ clean_text('source.abnormal_flag') }}) as abnormal_flag,
        -- status
        {{ normalize_result_status('source.status', status_default) }} as status,
        -- timestamps (naive UTC); effective time falls back to the issue time
        -- (docs/specification.md#fhir-r4)
        coalesce(
            {{ instant_utc('source.effective_at', 'source.effective_at_offset_min') }},
            {{ instant_utc('source.issued_at', 'source.issued_at_offset_min') }}
        ) as effective_at,
        {{ instant_utc('source.issued_at', 'source.issued_at_offset_min') }} as issued_at,
        -- order, method and body site
        {{ clean_text('source.order_id') }} as order_id,
        upper({{ clean_text('source.method_code') }}) as method_code,
        {{ clean_text('source.method_system') }} as method_system,
        {{ clean_text('source.method_text') }} as method_text,
        {{ clean_text('source.body_site_code') }} as body_site_code,
        {{ clean_text('source.body_site_system') }} as body_site_system,
        {{ clean_text('source.body_site_text') }} as body_site_text,
        -- tumor measurements: the short axis beside the longest diameter, in mm
        case {{ clean_lower('source.short_axis_unit') }}
            when 'mm' then cast(source.short_axis_value as {{ type_double() }})
            when 'cm' then cast(source.short_axis_value as {{ type_double() }}) * 10
        end as short_axis_mm
{%- endmacro %}

{% macro stg_condition_columns(feed, patient_mrn) -%}
    {%- set code_system -%}
        case
            when {{ clean_text('source.code') }} is null then 'text'
            else coalesce(systems.code_system, {{ clean_lower('source.code_system') }})
        end
    {%- endset -%}
        {{ stg_lineage_columns(feed, patient_mrn) }}
        -- code
        {{ code_system }} as code_system,
        {{ normalize_code('source.code', code_system) }} as code,
        {{ clean_text('source.code_system') }} as code_system_raw,
        {{ clean_text('source.code') }} as code_raw,
        {{ clean_text('source.code_display') }} as code_display,
        {{ clean_text('source.code_text') }} as code_text,
        -- second coding (normalized in int_conditions)
        {{ clean_text('source.alt_code_system') }} as alt_code_system_raw,
        {{ clean_text('source.alt_code') }} as alt_code_raw,
        {{ clean_text('source.alt_code_display') }} as alt_code_display,
        -- status
        {{ clean_lower('source.clinical_status') }} as clinical_status,
        {{ clean_lower('source.verification_status') }} as verification_status,
        -- timestamps (naive UTC)
        {{ instant_utc('source.onset_at', 'source.onset_at_offset_min') }} as onset_at,
        {{ instant_utc('source.recorded_at', 'source.recorded_at_offset_min') }} as recorded_at,
        {{ instant_utc('source.abatement_at', 'source.abatement_at_offset_min') }} as abatement_at
{%- endmacro %}

{% macro stg_medication_columns(feed, patient_mrn) -%}
    {%- set code_system -%}
        case
            when {{ clean_text('source.code') }} is not null
                then coalesce(systems.code_system, {{ clean_lower('source.code_system') }})
        end
    {%- endset -%}
        {{ stg_lineage_columns(feed, patient_mrn) }}
        -- resource
        case {{ clean_lower('source.resource_type') }}
            when 'medicationrequest' then 'MedicationRequest'
            when 'request' then 'MedicationRequest'
            when 'medicationstatement' then 'MedicationStatement'
            when 'statement' then 'MedicationStatement'
            when 'medicationadministration' then 'MedicationAdministration'
            when 'administration' then 'MedicationAdministration'
            else {{ clean_text('source.resource_type') }}
        end as resource_type,
        -- code
        {{ code_system }} as code_system,
        {{ normalize_code('source.code', code_system) }} as code,
        {{ clean_text('source.code_display') }} as code_display,
        {{ clean_text('source.code_text') }} as code_text,
        -- status; MedicationRequest.intent (proposal / plan: not therapy given)
        {{ clean_lower('source.status') }} as status,
        {{ clean_lower('source.intent') }} as intent,
        -- timestamps (naive UTC)
        {{ instant_utc('source.start_at', 'source.start_at_offset_min') }} as start_at,
        {{ instant_utc('source.end_at', 'source.end_at_offset_min') }} as end_at
{%- endmacro %}

{#- Every coding of a condition or medication (raw.<feed>_codings; docs/decisions.md "Every
    coding is kept"): the system recognised through the code_system_aliases seed (URIs and
    OIDs in real use), the code normalized like the entity's own code. -#}
{% macro stg_coding_columns(feed) -%}
    {%- set code_system -%}
        coalesce(systems.code_system, {{ clean_lower('source.system') }})
    {%- endset -%}
        '{{ feed }}' as evidence_source,
        {{ clean_text('source.record_id') }} as record_id,
        source.record_hash,
        source.source_file,
        cast(source.loaded_at as {{ dbt.type_timestamp() }}) as loaded_at,
        cast(source.load_id as {{ dbt.type_bigint() }}) as load_id,
        {{ clean_lower('source.entity') }} as entity,
        {{ clean_lower('source.element') }} as element,
        cast(source.seq as {{ dbt.type_bigint() }}) as seq,
        {{ code_system }} as code_system,
        {{ normalize_code('source.code', code_system) }} as code,
        {{ clean_text('source.system') }} as code_system_raw,
        {{ clean_text('source.code') }} as code_raw,
        {{ clean_text('source.display') }} as code_display
{%- endmacro %}

{#- FHIR only: the latest delivered version of every Patient, as (patient_ref, patient_mrn),
    to resolve Observation/Condition/Medication subjects (docs/specification.md#fhir-r4). -#}
{% macro fhir_patient_refs() -%}
    select
        patient_ref,
        patient_mrn
    from (
        select
            patient_ref,
            patient_mrn,
            row_number() over (
                partition by patient_ref
                order by loaded_at desc, source_file desc, source_position desc
            ) as version_rank
        from {{ ref('stg_fhir__patients') }}
        where patient_ref is not null
            and patient_mrn is not null
    ) as versions
    where version_rank = 1
{%- endmacro %}

{#- The codings of every feed (stg_<feed>__codings) that meet `condition`, as one union. A
    model that reads the codings several ways writes one union per use, each filtered inside:
    PostgreSQL then estimates each branch from the raw tables' statistics, where one shared
    CTE would be materialized and guessed (int_medications__codings). -#}
{% macro union_feed_codings(condition) -%}
    {%- for feed in ['fhir', 'hl7', 'csv'] %}
    select * from {{ ref('stg_' ~ feed ~ '__codings') }}
    where {{ condition }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
{%- endmacro %}
