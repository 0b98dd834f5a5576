-- stg_fhir__patients: raw.fhir_patients, one row per landed record, renamed, cast and cleaned.

with

source as (

    select * from {{ source('raw', 'fhir_patients') }}

),

renamed as (

    select
        {{ stg_patient_columns(feed='fhir', patient_mrn=clean_text('source.mrn')) }}
    from source

)

select * from renamed
