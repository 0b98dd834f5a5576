-- stg_config__trial_criteria: config.trial_criteria as every model reads it.
-- The runner writes schema config from the trial definitions before dbt runs.

with

source as (

    select * from {{ source('config', 'trial_criteria') }}

),

renamed as (

    select
        -- ids
        trial_id,
        cohort_id,
        criterion_id,
        -- criterion
        ordinal,
        label,
        rule,
        -- rule parameters
        analyte,
        operator,
        threshold,
        unit,
        uln_multiplier,
        ecog_max,
        karnofsky_min,
        lansky_under_age,
        window_days
    from source

)

select * from renamed
