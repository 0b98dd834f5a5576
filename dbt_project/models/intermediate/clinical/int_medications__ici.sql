-- Prior immune checkpoint inhibitor therapy per patient
-- (docs/clinical-rules.md#ici-refractory-progression): the first ICI start (any counting status)
-- and the record behind it.
with

ici as (

    select * from {{ ref('int_medications__concepts') }}
    where concept = 'ici'

),

ranked as (

    select
        *,
        row_number() over (
            partition by patient_mrn
            order by start_date asc nulls last, medication_id
        ) as start_rank,
        count(*) over (partition by patient_mrn) as n_ici_records
    from ici

)

select
    -- ids
    patient_mrn,
    medication_id as first_ici_medication_id,
    evidence_source,
    evidence_id,

    -- values
    coalesce(nullif(drug_text, ''), drug_label) as first_ici_drug,  -- free text: coordinators only
    drug_label as first_ici_label,
    n_ici_records,

    -- dates
    start_date as first_ici_start_date

from ranked
where start_rank = 1
