-- stg_hl7__patients: raw.hl7_patients, one row per landed record, renamed, cast and cleaned.
{%- set patient_mrn = "coalesce(" ~ clean_text('source.mrn') ~ ", " ~ clean_text('source.patient_ref') ~ ")" %}

with

source as (

    select * from {{ source('raw', 'hl7_patients') }}

),

renamed as (

    select
        {{ stg_patient_columns(feed='hl7', patient_mrn=patient_mrn) }}
    from source
    {{ join_surviving_mrn(patient_mrn) }}

)

select * from renamed
