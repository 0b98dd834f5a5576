-- stg_config__trial_settings: config.trial_settings as every model reads it.
-- The runner writes schema config from the trial definitions before dbt runs.

with

source as (

    select * from {{ source('config', 'trial_settings') }}

),

renamed as (

    select
        -- ids
        trial_id,
        -- windows
        labs_window_days,
        performance_window_days,
        tumor_window_days,
        hiv_viral_load_window_days,
        weight_window_days,
        height_adult_age_years,
        height_child_window_days,
        -- creatinine clearance
        cg_weight_rule,
        cg_adjusted_factor,
        cg_bsa_formula,
        cg_compare,
        cg_threshold,
        -- RECIST
        recist_ct_mr_caliper_mm,
        recist_chest_xray_mm,
        recist_nodal_short_axis_mm
    from source

)

select * from renamed
