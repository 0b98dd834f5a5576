-- Active antiretroviral therapy on the screening date
-- (docs/clinical-rules.md#counting-medications): an antiretroviral record whose status is active,
-- or a MedicationStatement (or CSV medication row) whose period has no end or ends on or after the
-- screening date. One row per patient with active ART (the latest-started record).
with

art as (

    select * from {{ ref('int_medications__concepts') }}
    where concept = 'antiretroviral'

),

active as (

    select *
    from art
    -- on-hold is exposure, not active therapy (int_medications__concepts already drops
    -- not-taken, not-done, proposals and plans)
    where status = 'active'
        or (
            lower(resource_type) in ('medicationstatement', 'csv')
            and coalesce(status, '') not in ('not-taken', 'on-hold')
            and (end_date is null or end_date >= {{ screening_date() }})
        )

),

ranked as (

    select
        *,
        row_number() over (
            partition by patient_mrn
            order by start_date desc nulls last, medication_id
        ) as start_rank
    from active

)

select
    -- ids
    patient_mrn,
    medication_id,
    evidence_source,
    evidence_id,

    -- values
    coalesce(nullif(drug_text, ''), drug_label) as drug,  -- free text: coordinators only
    drug_label,

    -- dates
    start_date,
    end_date

from ranked
where start_rank = 1
