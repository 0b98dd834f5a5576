-- stg_fhir__observations: raw.fhir_observations, one row per landed record, renamed, cast and cleaned.
-- The FHIR subject (patient_ref = Patient.id) resolves to the MRN through stg_fhir__patients.
{%- set patient_mrn = "coalesce(" ~ clean_text('source.mrn') ~ ", patients.patient_mrn)" %}

with

source as (

    select * from {{ source('raw', 'fhir_observations') }}

),

systems as (

    select * from {{ ref('code_system_aliases') }}

),

patients as (

    {{ fhir_patient_refs() }}

),

renamed as (

    select
        {{ stg_observation_columns(feed='fhir', patient_mrn=patient_mrn) }}
    from source
    left join patients
        on {{ clean_text('source.patient_ref') }} = patients.patient_ref
    left join systems
        on {{ clean_lower('source.value_code_system') }} = systems.system_alias
    {{ join_surviving_mrn(patient_mrn) }}

)

select * from renamed
