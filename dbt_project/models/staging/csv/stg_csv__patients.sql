-- stg_csv__patients: raw.csv_patients, one row per landed record, renamed, cast and cleaned.
{%- set patient_mrn = "coalesce(" ~ clean_text('source.mrn') ~ ", " ~ clean_text('source.patient_ref') ~ ")" %}

with

source as (

    select * from {{ source('raw', 'csv_patients') }}

),

renamed as (

    select
        {{ stg_patient_columns(feed='csv', patient_mrn=patient_mrn) }}
    from source
    {{ join_surviving_mrn(patient_mrn) }}

)

select * from renamed
