{{ config(schema='restricted') }}
-- Re-identification of candidates for coordinators only (docs/specification.md#candidate-contacts):
-- patient_key -> MRN, name, birth date, for every patient who is a candidate in at least one trial
-- cohort of this run. Schema `restricted`; never granted to analysts.
with

candidates as (

    select distinct patient_key from {{ ref('eligible_candidates') }}

),

patients as (

    select * from {{ ref('int_patients') }}

)

select
    candidates.patient_key,
    patients.patient_mrn as mrn,
    patients.family_name,
    patients.given_name,
    patients.birth_date

from candidates
inner join patients
    on candidates.patient_key = patients.patient_key
