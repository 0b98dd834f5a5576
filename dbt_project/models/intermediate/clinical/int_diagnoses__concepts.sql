-- Counting conditions matched to the concepts of seed condition_codes, one row per
-- (patient, concept, condition). Coded systems match by code prefix (`C78` matches `C787`) or exactly (seed match_type);
-- code_system 'text' rows match case-insensitive substrings of the condition's text or
-- display (docs/clinical-rules.md#counting-conditions) and are flagged matched_on = 'text'.
-- Counting: not refuted / entered in error, onset (else recorded date) on or before the
-- screening date, and - unless the concept is lifelong (seed condition_concepts) - an active
-- clinical status and no abatement on or before the screening date.
with

conditions as (

    select * from {{ ref('int_conditions') }}

),

condition_codes as (

    select * from {{ ref('condition_codes') }}

),

condition_concepts as (

    select * from {{ ref('condition_concepts') }}

),

counting as (

    -- status, onset and abatement are checked per concept below (a lifelong concept counts
    -- whatever its clinical status and abatement, unless refuted or entered in error)
    select *
    from conditions
    where not is_refuted
        and coalesce(onset_date, recorded_date, {{ screening_date() }}) <= {{ screening_date() }}

),

coded_matches as (

    select
        condition_codes.concept,
        'code' as matched_on,
        cast(null as {{ dbt.type_string() }}) as matched_pattern,
        cast(null as {{ dbt.type_string() }}) as matched_text,
        counting.*
    from counting
    inner join condition_codes
        on counting.code_system = condition_codes.code_system
        and (
            (condition_codes.match_type = 'prefix' and counting.code like condition_codes.code_pattern || '%')
            or (condition_codes.match_type = 'exact' and counting.code = condition_codes.code_pattern)
            or (condition_codes.match_type = 'suffix' and counting.code like '%' || condition_codes.code_pattern)
            -- ICD-O-3 behaviour /6 (metastatic site) of a listed /3 morphology is that tumour
            or (
                condition_codes.match_type = 'exact'
                and condition_codes.code_system = 'icdo3'
                and condition_codes.code_pattern like '%/3'
                and counting.code = substr(condition_codes.code_pattern, 1, 5) || '6'
            )
        )
    where condition_codes.code_system <> 'text'

),

text_matches as (

    select
        condition_codes.concept,
        'text' as matched_on,
        condition_codes.code_pattern as matched_pattern,
        -- the text that actually matched (the condition's text, else its display)
        case
            when lower(coalesce(counting.code_text, '')) like '%' || lower(condition_codes.code_pattern) || '%'
                then counting.code_text
            else counting.code_display
        end as matched_text,
        counting.*
    from counting
    inner join condition_codes
        on condition_codes.code_system = 'text'
        and (
            lower(coalesce(counting.code_text, '')) like '%' || lower(condition_codes.code_pattern) || '%'
            or lower(coalesce(counting.code_display, '')) like '%' || lower(condition_codes.code_pattern) || '%'
        )

),

all_matches as (

    select * from coded_matches
    union all
    select * from text_matches

),

matches as (

    -- clinical status and abatement (docs/clinical-rules.md#counting-conditions): an abatement
    -- on or before the screening date ends the condition; lifelong concepts (HIV, Gilbert
    -- syndrome: condition_concepts.lifelong) count whatever their status and abatement
    select all_matches.*
    from all_matches
    left join condition_concepts
        on all_matches.concept = condition_concepts.concept
    where coalesce(condition_concepts.lifelong, false)
        or (
            all_matches.is_counting
            and (
                all_matches.abatement_date is null
                or all_matches.abatement_date > {{ screening_date() }}
            )
        )

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
    coalesce(matched_text, code_display, code_text, {{ display_code('code') }}) as code_label,
    -- the seed term a text match found (vocabulary, fit for the analysts' marts)
    min(matched_pattern) over (partition by concept, matched_on, condition_id) as matched_term,

    -- dates
    onset_date,
    recorded_date,
    coalesce(onset_date, recorded_date) as evidence_date

from matches
