-- stg_hl7__observations: raw.hl7_observations, one row per landed record, renamed, cast and cleaned.
{%- set patient_mrn = "coalesce(" ~ clean_text('source.mrn') ~ ", " ~ clean_text('source.patient_ref') ~ ")" %}

with

source as (

    select * from {{ source('raw', 'hl7_observations') }}

),

systems as (

    select * from {{ ref('code_system_aliases') }}

),

renamed as (

    select
        {{ stg_observation_columns(feed='hl7', patient_mrn=patient_mrn) }}
    from source
    left join systems
        on {{ clean_lower('source.value_code_system') }} = systems.system_alias
    {{ join_surviving_mrn(patient_mrn) }}

)

select * from renamed
