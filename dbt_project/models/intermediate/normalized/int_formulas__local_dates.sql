{{ config(materialized="view") }}

-- int_formulas__local_dates: date_in_timezone() (macros/timezones.sql) applied to the
-- observation times of int_observations for three fixed zones, so the time-zone macro has a
-- model to unit-test and its effect is visible next to the configured var('timezone').
-- Nothing downstream reads it.

with

observations as (

    select * from {{ ref('int_observations') }}

),

final as (

    select
        observation_id,
        effective_at,
        effective_date,
        {{ date_in_timezone('effective_at', 'UTC') }} as date_utc,
        {{ date_in_timezone('effective_at', 'America/New_York') }} as date_new_york,
        {{ date_in_timezone('effective_at', 'Europe/Paris') }} as date_paris
    from observations

)

select * from final
