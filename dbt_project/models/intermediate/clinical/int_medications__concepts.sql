-- Medication records matched to the concepts of seed medication_codes (ici,
-- antiretroviral), one row per (patient, concept, medication), on every coding of the record
-- (int_medications__codings). ATC matches by prefix (`L01FF` matches `L01FF01`) or exactly
-- (the pre-2022 ICI codes L01XC11/17/18/28/31/32: no L01XC prefix, which also holds
-- bevacizumab and olaratumab), RxNorm by exact ingredient code (products via rxnorm_products), code_system 'text'
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

codings as (

    select * from {{ ref('int_medications__codings') }}

),

counting as (

    -- never therapy: cancelled, draft, entered in error, an administration not done, a
    -- statement not taken, a request that is only a proposal or a plan (intent). on-hold
    -- counts as exposure (int_medications__antiretroviral does not count it as active).
    select *
    from medications
    where coalesce(status, '') not in (
            'cancelled', 'draft', 'entered-in-error', 'not-done', 'not-taken'
        )
        and coalesce(intent, '') not in ('proposal', 'plan')
        and coalesce(start_date, {{ screening_date() }}) <= {{ screening_date() }}

),

matches as (

    -- every coding of the record (int_medications__codings), and its names
    select
        medication_codes.concept,
        medication_codes.code_system as matched_system,
        medication_codes.code_pattern as matched_pattern,
        case
            when medication_codes.code_system = 'text' then null
            else codings.code || ' (' || replace(medication_codes.description, ' (ingredient)', '') || ')'
        end as seed_label,
        counting.*
    from counting
    inner join codings
        on counting.medication_id = codings.medication_id
    inner join medication_codes
        on (
            medication_codes.code_system = 'atc'
            and codings.code_system = 'atc'
            and (
                (medication_codes.match_type = 'prefix' and upper(codings.code) like upper(medication_codes.code_pattern) || '%')
                or (medication_codes.match_type = 'exact' and upper(codings.code) = upper(medication_codes.code_pattern))
            )
        )
        or (
            medication_codes.code_system = 'rxnorm'
            and codings.code_system = 'rxnorm'
            and codings.code = medication_codes.code_pattern
        )
        or (
            medication_codes.code_system = 'text'
            and (
                lower(coalesce(counting.drug_text, '')) like '%' || lower(medication_codes.code_pattern) || '%'
                or lower(coalesce(codings.code_display, '')) like '%' || lower(medication_codes.code_pattern) || '%'
            )
        )

),

labelled as (

    -- the seed term a text match found (vocabulary), for the analysts' drug label
    select
        *,
        min(case when matched_system = 'text' then matched_pattern end)
            over (partition by concept, medication_id) as matched_term_any,
        min(seed_label) over (partition by concept, medication_id) as seed_label_any
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
    -- the drug once, in seed vocabulary (fit for the analysts' marts): the name that matched,
    -- else the matched code with the seed's description (docs/decisions.md, reasons)
    coalesce(matched_term_any, seed_label_any, code, concept) as drug_label,
    status,

    -- dates
    start_date,
    end_date

from labelled
