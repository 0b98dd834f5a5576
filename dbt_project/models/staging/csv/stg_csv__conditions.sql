-- stg_csv__conditions: raw.csv_conditions, one row per landed record, renamed, cast and cleaned.
{%- set patient_mrn = "coalesce(" ~ clean_text('source.mrn') ~ ", " ~ clean_text('source.patient_ref') ~ ")" %}

with

source as (

    select * from {{ source('raw', 'csv_conditions') }}

),

systems as (

    select * from {{ ref('code_system_aliases') }}

),

renamed as (

    select
        {{ stg_condition_columns(feed='csv', patient_mrn=patient_mrn) }}
    from source
    left join systems
        on {{ clean_lower('source.code_system') }} = systems.system_alias
    {{ join_surviving_mrn(patient_mrn) }}

)

select * from renamed
