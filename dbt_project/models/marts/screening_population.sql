-- The screened population and who is not screened, per trial (docs/decisions.md "Who is
-- screened"), from the one definition in int_screening__patient_status: every MRN on record
-- once, counted by the reason it is not screened. patients_screened is the population every
-- criterion of marts.screening_funnel starts from. Counts only: analyst-safe.
with

status as (

    select * from {{ ref('int_screening__patient_status') }}

),

trials as (

    select * from {{ ref('stg_config__trials') }}

),

counts as (

    select
        count(*) as mrns_on_record,
        sum(case when exclusion_reason is null then 1 else 0 end) as patients_screened,
        sum(case when exclusion_reason = 'merged_away' then 1 else 0 end) as merged_away,
        sum(case when exclusion_reason = 'test_patient' then 1 else 0 end) as test_patients,
        sum(case when exclusion_reason = 'not_born' then 1 else 0 end) as not_born,
        sum(case when exclusion_reason = 'deceased' then 1 else 0 end) as deceased
    from status

)

select
    {{ run_id() }} as run_id,
    {{ screening_date() }} as screening_date,
    trials.trial_id,
    counts.mrns_on_record,
    counts.patients_screened,
    counts.merged_away,
    counts.test_patients,
    counts.not_born,
    counts.deceased
from trials
cross join counts
