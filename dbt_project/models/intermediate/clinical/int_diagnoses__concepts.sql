-- Counting conditions matched to the concepts of seed condition_codes, one row per
-- (patient, concept, condition). Coded systems match by code prefix (`C78` matches `C787`) or exactly (seed match_type);
-- code_system 'text' rows match case-insensitive substrings of the condition's text or
-- display (docs/clinical-rules.md#counting-conditions) and are flagged matched_on = 'text'.
-- Counting: is_counting (clinical/verification status) and onset (else recorded date) on
-- or before the screening date.
with

conditions as (

    select * from {{ ref('int_conditions') }}

),

condition_codes as (

    select * from {{ ref('condition_codes') }}

),

counting as (

    select *
    from conditions
    where is_counting
        and coalesce(onset_date, recorded_date, {{ screening_date() }}) <= {{ screening_date() }}

),

coded_matches as (

    select
        condition_codes.concept,
        'code' as matched_on,
        cast(null as {{ dbt.type_string() }}) as matched_pattern,
        counting.*
    from counting
    inner join condition_codes
        on counting.code_system = condition_codes.code_system
        and (
            (condition_codes.match_type = 'prefix' and counting.code like condition_codes.code_pattern || '%')
            or (condition_codes.match_type = 'exact' and counting.code = condition_codes.code_pattern)
        )
    where condition_codes.code_system <> 'text'

),

text_matches as (

    select
        condition_codes.concept,
        'text' as matched_on,
        condition_codes.code_pattern as matched_pattern,
        counting.*
    from counting
    inner join condition_codes
        on condition_codes.code_system = 'text'
        and (
            lower(coalesce(counting.code_text, '')) like '%' || lower(condition_codes.code_pattern) || '%'
            or lower(coalesce(counting.code_display, '')) like '%' || lower(condition_codes.code_pattern) || '%'
        )

),

matches as (

    select * from coded_matches
    union all
    select * from text_matches

)

select distinct
    -- ids
    patient_mrn,
    concept,
    matched_on,
    condition_id,
    evidence_source,
    evidence_id,

    -- code
    code_system,
    code,
    -- the source's display or text: free text (docs/decisions.md "Free text from source
    -- records"), for coordinator-facing reasons only
    coalesce(code_display, code_text, code) as code_label,
    -- the seed term a text match found (vocabulary, fit for the analysts' marts)
    min(matched_pattern) over (partition by concept, matched_on, condition_id) as matched_term,

    -- dates
    onset_date,
    recorded_date,
    coalesce(onset_date, recorded_date) as evidence_date

from matches
