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
        medication_codes.code_system as matched_system,
        medication_codes.code_pattern as matched_pattern,
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

),

labelled as (

    -- the seed term a text match found (vocabulary), for the analysts' drug label
    select
        *,
        min(case when matched_system = 'text' then matched_pattern end)
            over (partition by concept, medication_id) as matched_term
    from matches

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
    -- the source's display and text: free text (docs/decisions.md "Free text from source
    -- records"), for coordinator-facing reasons only
    drug_text,
    -- the code and the seed term that matched: fit for the analysts' marts
    case
        when matched_term is null then coalesce(code, concept)
        when code is null then matched_term
        else code || ' (' || matched_term || ')'
    end as drug_label,
    status,

    -- dates
    start_date,
    end_date

from labelled
