-- Who is screened (docs/decisions.md "Who is screened", "Patient merges and test patients"):
-- one row per MRN on record - every patient of int_patients and every MRN retired by a merge -
-- with the reason it is not screened, null for the screened population. The single
-- definition: int_screening__population screens the rows with no reason, and
-- marts.screening_population counts every reason.
--   merged_away  the MRN was retired into another (its records count for the survivor)
--   test_patient the MRN is on seed test_patients (exactly, or by prefix)
--   not_born     born after the screening date (an implausible birth date is screened:
--                age unknown, docs/decisions.md "Per-record containment")
--   deceased     a recorded death on or before the screening date
-- A patient with no birth date, or feeds disagreeing on it, is screened (age unknown).
with

patients as (

    select * from {{ ref('int_patients') }}

),

patient_merges as (

    select * from {{ ref('int_patient_merges') }}

),

test_patients as (

    select * from {{ ref('test_patients') }}

),

patient_keys as (

    select * from {{ source('restricted', 'patient_keys') }}

),

test_mrns as (

    select distinct patients.patient_mrn
    from patients
    inner join test_patients
        on (test_patients.match = 'mrn' and patients.patient_mrn = trim(test_patients.value))
        or (
            test_patients.match = 'prefix'
            and {{ dbt.position('trim(test_patients.value)', 'patients.patient_mrn') }} = 1
        )

),

classified as (

    select
        patients.patient_mrn,
        patients.patient_key,
        case
            when test_mrns.patient_mrn is not null then 'test_patient'
            when patients.birth_date > {{ screening_date() }}
                and not {{ birth_date_implausible('patients.birth_date', 'patients.loaded_at') }}
                then 'not_born'
            when patients.deceased_at is not null
                and {{ date_in_timezone('patients.deceased_at', timezone_name()) }}
                <= {{ screening_date() }}
                then 'deceased'
        end as exclusion_reason
    from patients
    left join test_mrns
        on patients.patient_mrn = test_mrns.patient_mrn
    union all
    select
        patient_merges.retired_mrn as patient_mrn,
        patient_keys.patient_key,
        'merged_away' as exclusion_reason
    from patient_merges
    left join patient_keys
        on patient_merges.retired_mrn = patient_keys.mrn

)

select * from classified
