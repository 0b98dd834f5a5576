-- stg_csv__patient_merges: raw.csv_patient_merges, one row per landed merge record, cleaned.
-- Not through stg_lineage_columns: these rows define the MRN mapping that macro applies.

with

source as (

    select * from {{ source('raw', 'csv_patient_merges') }}

),

renamed as (

    select
        {{ stg_patient_merge_columns(feed='csv') }}
    from source

)

select * from renamed
