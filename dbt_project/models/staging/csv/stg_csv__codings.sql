-- stg_csv__codings: raw.csv_codings, every coding of a condition or medication (child rows
-- with the parent record's lineage; docs/decisions.md "Every coding is kept").

with

source as (

    select * from {{ source('raw', 'csv_codings') }}

),

systems as (

    select * from {{ ref('code_system_aliases') }}

),

renamed as (

    select
        {{ stg_coding_columns(feed='csv') }}
    from source
    left join systems
        on {{ clean_lower('source.system') }} = systems.system_alias

)

select * from renamed
