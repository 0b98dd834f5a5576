-- int_patients: one row per MRN across the three feeds, with its pseudonymous key.
-- When feeds (or re-deliveries) disagree, the most recently loaded record wins; records
-- loaded at the same time are ranked FHIR, then CSV, then HL7 (the registration system
-- first, the lab feed last), then the later file and position.

with

fhir as (

    select * from {{ ref('stg_fhir__patients') }}

),

hl7 as (

    select * from {{ ref('stg_hl7__patients') }}

),

csv as (

    select * from {{ ref('stg_csv__patients') }}

),

patient_keys as (

    select * from {{ source('restricted', 'patient_keys') }}

),

unioned as (

    select * from fhir
    union all
    select * from hl7
    union all
    select * from csv

),

ranked as (

    select
        unioned.*,
        row_number() over (
            partition by patient_mrn
            order by
                loaded_at desc,
                case evidence_source when 'fhir' then 1 when 'csv' then 2 else 3 end,
                source_file desc,
                source_position desc
        ) as version_rank
    from unioned
    where patient_mrn is not null

),

latest as (

    select * from ranked
    where version_rank = 1

),

final as (

    select
        -- ids
        latest.patient_mrn,
        patient_keys.patient_key,
        -- demographics
        latest.birth_date,
        latest.sex,
        latest.family_name,
        latest.given_name,
        latest.deceased_at,
        -- evidence
        latest.evidence_source,
        latest.record_id as evidence_id,
        latest.source_file,
        latest.loaded_at
    from latest
    left join patient_keys
        on latest.patient_mrn = patient_keys.mrn

)

select * from final
