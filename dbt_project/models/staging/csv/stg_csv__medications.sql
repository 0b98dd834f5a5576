-- stg_csv__medications: raw.csv_medications, one row per landed record, renamed, cast and cleaned.
{%- set patient_mrn = "coalesce(" ~ clean_text('source.mrn') ~ ", " ~ clean_text('source.patient_ref') ~ ")" %}

with

source as (

    select * from {{ source('raw', 'csv_medications') }}

),

systems as (

    select * from {{ ref('code_system_aliases') }}

),

renamed as (

    select
        {{ stg_medication_columns(feed='csv', patient_mrn=patient_mrn) }}
    from source
    left join systems
        on {{ clean_lower('source.code_system') }} = systems.system_alias
    {{ join_surviving_mrn(patient_mrn) }}

)

select * from renamed
