-- stg_hl7__patient_merges: raw.hl7_patient_merges, one row per landed merge record, cleaned.
-- Not through stg_lineage_columns: these rows define the MRN mapping that macro applies.

with

source as (

    select * from {{ source('raw', 'hl7_patient_merges') }}

),

renamed as (

    select
        {{ stg_patient_merge_columns(feed='hl7') }}
    from source

)

select * from renamed
