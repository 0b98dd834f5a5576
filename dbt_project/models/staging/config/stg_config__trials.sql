-- stg_config__trials: config.trials as every model reads it.
-- The runner writes schema config from the trial definitions before dbt runs.

with

source as (

    select * from {{ source('config', 'trials') }}

),

renamed as (

    select
        -- ids
        trial_id,
        -- definition
        title,
        nct_id,
        definition_hash
    from source

)

select * from renamed
