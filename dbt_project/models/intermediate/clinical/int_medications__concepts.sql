-- Medication records matched to the concepts of seed medication_codes (ici,
-- antiretroviral), one row per (patient, concept, medication). ATC matches by prefix
-- (`L01FF` matches `L01FF01`; pre-2022 `L01XC`), RxNorm by exact code, code_system 'text'
-- rows by case-insensitive substring of the drug text (generic or brand name;
-- docs/clinical-rules.md#counting-medications). Only records started on or before the screening
-- date, and not cancelled, draft or entered-in-error, count as therapy.
with

medications as (

    select * from {{ ref('int_medications') }}

),

medication_codes as (

    select * from {{ ref('medication_codes') }}

),

counting as (

    select *
    from medications
    where coalesce(status, '') not in ('cancelled', 'draft', 'entered-in-error')
        and coalesce(start_date, {{ screening_date() }}) <= {{ screening_date() }}

),

matches as (

    select
        medication_codes.concept,
        counting.*
    from counting
    inner join medication_codes
        on (
            medication_codes.code_system = 'atc'
            and counting.code_system = 'atc'
            and (
                (medication_codes.match_type = 'prefix' and upper(counting.code) like upper(medication_codes.code_pattern) || '%')
                or (medication_codes.match_type = 'exact' and upper(counting.code) = upper(medication_codes.code_pattern))
            )
        )
        or (
            medication_codes.code_system = 'rxnorm'
            and counting.code_system = 'rxnorm'
            and counting.code = medication_codes.code_pattern
        )
        or (
            medication_codes.code_system = 'text'
            and lower(coalesce(counting.drug_text, '')) like '%' || lower(medication_codes.code_pattern) || '%'
        )

)

select distinct
    -- ids
    patient_mrn,
    concept,
    medication_id,
    evidence_source,
    evidence_id,
    resource_type,

    -- drug
    code_system,
    code,
    drug_text,
    status,

    -- dates
    start_date,
    end_date

from matches
