-- stg_fhir__patients: raw.fhir_patients, one row per landed record, renamed, cast and cleaned.
{%- set patient_mrn = clean_text('source.mrn') %}

with

source as (

    select * from {{ source('raw', 'fhir_patients') }}

),

renamed as (

    select
        {{ stg_patient_columns(feed='fhir', patient_mrn=patient_mrn) }}
    from source
    {{ join_surviving_mrn(patient_mrn) }}

)

select * from renamed
