-- stg_csv__observations: raw.csv_observations, one row per landed record, renamed, cast and cleaned.
-- The CSV contract allows an empty status: a CSV result without status is final.
{%- set patient_mrn = "coalesce(" ~ clean_text('source.mrn') ~ ", " ~ clean_text('source.patient_ref') ~ ")" %}

with

source as (

    select * from {{ source('raw', 'csv_observations') }}

),

systems as (

    select * from {{ ref('code_system_aliases') }}

),

renamed as (

    select
        {{ stg_observation_columns(feed='csv', patient_mrn=patient_mrn, status_default="'final'") }}
    from source
    left join systems
        on {{ clean_lower('source.value_code_system') }} = systems.system_alias
    {{ join_surviving_mrn(patient_mrn) }}

)

select * from renamed
