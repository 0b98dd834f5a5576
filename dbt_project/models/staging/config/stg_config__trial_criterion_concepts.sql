-- stg_config__trial_criterion_concepts: config.trial_criterion_concepts as every model reads it.
-- The runner writes schema config from the trial definitions before dbt runs.

with

source as (

    select * from {{ source('config', 'trial_criterion_concepts') }}

),

renamed as (

    select
        -- ids
        trial_id,
        criterion_id,
        -- concept
        role,
        concept,
        modifier_uln_multiplier
    from source

)

select * from renamed
