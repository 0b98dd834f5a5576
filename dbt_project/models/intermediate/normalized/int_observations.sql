{{ config(
    materialized=incremental_materialization(),
    incremental_strategy='append',
    pre_hook="{{ incremental_delete_changed() }}",
) }}
-- depends_on: {{ ref('int_changed_patients') }}
-- int_observations: one row per observation that counts, with its value in the analyte's
-- canonical unit (docs/specification.md#normalization).
--
--   1. latest delivered version of every record (a FHIR resource re-delivered with changes:
--      the latest loaded version wins)
--   2. code -> LOINC (raw LOINC when seed loinc_analytes knows it, else the local code's LOINC
--      through seed local_lab_codes: the sending facility's row, else the any-facility row)
--      -> analyte; observations of codes the trials do not use are dropped (and counted in
--      dq_unmapped_codes)
--   3. HL7/CSV results of the same patient, order and code supersede each other: the latest
--      issued wins (on a tie: a retraction, then a correction, then the latest loaded), so a
--      `corrected` result replaces the `final` it corrects and a later `entered-in-error`
--      retracts it. Statuses preliminary/registered never take part.
--   4. keep final/amended/corrected only (cancelled and entered-in-error are excluded)
--   5. unit spelling -> UCUM (seed unit_aliases; `G/L` resolves by analyte) -> canonical unit
--      (seed unit_conversions), log10 viral loads as 10^x
--   6. plausibility (seed plausibility_ranges): a value out of range is kept and flagged
--      (value_issue = 'implausible') but value_canonical is null.
--   Values sent as text (HL7 ST/TX/FT, FHIR valueString, CSV value text; docs/decisions.md "Lab
--   values as laboratories send them") are read here, once per distinct (analyte, text): a
--   qualitative answer (seed qualitative_results), else a number with thousands separators, a
--   comparator, a printed abnormal flag (seed abnormal_flags) and a unit inside the text (used
--   when it agrees with the unit sent or replaces an absent one). Anything else stays
--   value_issue 'non_numeric' with the text as sent in value_text (coordinators only).

with

loinc_analytes as (

    select * from {{ ref('loinc_analytes') }}

),

local_lab_codes as (

    select * from {{ ref('local_lab_codes') }}

),

unit_aliases as (

    select * from {{ ref('unit_aliases') }}

),

unit_conversions as (

    select * from {{ ref('unit_conversions') }}

),

plausibility_ranges as (

    select * from {{ ref('plausibility_ranges') }}

),

coded_scores as (

    select * from {{ ref('coded_scores') }}

),

qualitative_results as (

    select * from {{ ref('qualitative_results') }}

),

abnormal_flags as (

    select * from {{ ref('abnormal_flags') }}

),

-- 1. latest delivered version of every record
latest_versions as (

    {{ latest_versions('observations') }}

),

-- 2. code resolution
coded as (

    select
        latest_versions.*,
        -- a LOINC the seed does not know gives way to a local code the seed maps; the
        -- seed's row for the observation's facility wins over its any-facility row
        case
            when known_loinc.loinc is not null then latest_versions.loinc
            else coalesce({{ local_lab_code('loinc') }}, latest_versions.loinc)
        end as resolved_loinc,
        {{ local_lab_code('analyte') }} as local_analyte,
        {{ local_lab_code('canonical_unit') }} as local_canonical_unit,
        {{ local_lab_code('default_ucum') }} as local_default_ucum,
        {{ local_lab_code('scale') }} as local_scale
    from latest_versions
    left join loinc_analytes as known_loinc
        on latest_versions.loinc = known_loinc.loinc
    {{ join_local_lab_codes('latest_versions.local_code', 'latest_versions.facility') }}

),

with_analyte as (

    select
        coded.*,
        coalesce(loinc_analytes.analyte, coded.local_analyte) as analyte,
        coalesce(loinc_analytes.canonical_unit, coded.local_canonical_unit) as canonical_unit,
        coalesce(loinc_analytes.default_ucum, coded.local_default_ucum) as default_ucum,
        coalesce(loinc_analytes.is_log10, false) as is_log10,
        coalesce(loinc_analytes.scale, coded.local_scale) as scale
    from coded
    left join loinc_analytes
        on coded.resolved_loinc = loinc_analytes.loinc

),

-- 3. supersession within an order (HL7, CSV)
superseded as (

    select
        with_analyte.*,
        row_number() over (
            partition by
                with_analyte.evidence_source,
                with_analyte.patient_mrn,
                coalesce(with_analyte.resolved_loinc, with_analyte.local_code),
                case
                    when with_analyte.evidence_source in ('hl7', 'csv') and with_analyte.order_id is not null
                        then {{ dbt.concat(["'order:'", "with_analyte.order_id"]) }}
                    else {{ dbt.concat(["'record:'", "with_analyte.record_id"]) }}
                end
            order by
                with_analyte.issued_at desc nulls last,
                case
                    when with_analyte.status in ('cancelled', 'entered-in-error') then 0
                    when with_analyte.status in ('corrected', 'amended') then 1
                    else 2
                end,
                with_analyte.loaded_at desc,
                with_analyte.source_file desc,
                with_analyte.source_position desc
        ) as supersede_rank
    from with_analyte
    where with_analyte.analyte is not null
        and with_analyte.status in ('final', 'amended', 'corrected', 'cancelled', 'entered-in-error')

),

-- 4. results that count
counting as (

    select * from superseded
    where supersede_rank = 1
        and status in ('final', 'amended', 'corrected')

),

-- 5a. values sent as text, read once per distinct (analyte, text)
text_values as (

    select distinct
        analyte,
        value_text,
        trim({{ regex_replace_all(
            "replace(replace(replace(replace(replace(replace(value_text, chr(9), ' '), chr(10), ' '), chr(13), ' '), chr(160), ' '), '≤', '<='), '≥', '>=')",
            ' +', ' ') }}) as text_clean
    from counting
    where value_numeric is null
        and value_code is null
        and value_text is not null

),

text_split as (

    select
        text_values.*,
        {{ regex_group('text_clean', '^(<=|>=|<|>|=)? *([0-9]{1,3}(?:,[0-9]{3})+(?:[.][0-9]+)?|[0-9]+(?:[.][0-9]*)?|[.][0-9]+) *(.*)$', 1) }} as text_comparator_sent,
        {{ regex_group('text_clean', '^(<=|>=|<|>|=)? *([0-9]{1,3}(?:,[0-9]{3})+(?:[.][0-9]+)?|[0-9]+(?:[.][0-9]*)?|[.][0-9]+) *(.*)$', 2) }} as text_number_sent,
        trim({{ regex_group('text_clean', '^(<=|>=|<|>|=)? *([0-9]{1,3}(?:,[0-9]{3})+(?:[.][0-9]+)?|[0-9]+(?:[.][0-9]*)?|[.][0-9]+) *(.*)$', 3) }}) as text_rest,
        {{ regex_replace_all('lower(text_clean)', '[.]+$', '') }} as text_lower
    from text_values

),

text_words as (

    select
        text_split.*,
        trim({{ regex_group('text_rest', '^(.* )?([^ ]+)$', 1) }}) as text_rest_head,
        {{ regex_group('text_rest', '^(.* )?([^ ]+)$', 2) }} as text_rest_last
    from text_split

),

text_read as (

    select
        text_words.analyte,
        text_words.value_text,
        qualitative_results.meaning as text_qualitative,
        cast(replace(text_words.text_number_sent, ',', '') as {{ type_double() }}) as text_number,
        case
            when text_words.text_comparator_sent in ('<', '<=', '>', '>=')
                then text_words.text_comparator_sent
        end as text_comparator,
        -- the rest after the number: nothing, a flag, a unit, or a unit and a flag
        case
            when text_words.text_number_sent is null then null
            when nullif(text_words.text_rest, '') is null or whole_flag.flag is not null then null
            when last_flag.flag is not null then nullif(text_words.text_rest_head, '')
            else text_words.text_rest
        end as text_unit
    from text_words
    left join qualitative_results
        on qualitative_results.match_on = 'text'
        and text_words.text_lower = qualitative_results.answer
        and text_words.analyte = qualitative_results.analyte
    left join abnormal_flags as whole_flag
        on upper(text_words.text_rest) = upper(whole_flag.flag)
    left join abnormal_flags as last_flag
        on upper(text_words.text_rest_last) = upper(last_flag.flag)

),

with_text as (

    select
        counting.*,
        coalesce(text_read.text_qualitative, coded_answers.meaning) as value_qualitative,
        case when text_read.text_qualitative is null then text_read.text_number end as text_number,
        text_read.text_comparator,
        text_read.text_unit,
        text_read.value_text is not null and text_read.text_qualitative is null as is_text_number
    from counting
    left join text_read
        on counting.value_numeric is null
        and counting.value_code is null
        and counting.analyte = text_read.analyte
        and counting.value_text = text_read.value_text
    left join qualitative_results as coded_answers
        on coded_answers.match_on = 'code'
        and counting.value_code = coded_answers.answer
        and counting.analyte = coded_answers.analyte

),

-- 5b. unit resolution, once per distinct (analyte, unit code, unit text)
unit_keys as (

    select distinct
        analyte,
        unit_code,
        unit_text
    from counting
    where unit_code is not null or unit_text is not null
    union
    select distinct
        analyte,
        cast(null as {{ dbt.type_string() }}) as unit_code,
        text_unit as unit_text
    from text_read
    where text_unit is not null

),

unit_candidates as (

    -- the UCUM code (FHIR valueQuantity.code) is tried before the human-readable unit
    select
        analyte,
        unit_code,
        unit_text,
        unit_code as candidate,
        0 as candidate_rank
    from unit_keys
    where unit_code is not null
    union all
    select
        analyte,
        unit_code,
        unit_text,
        unit_text as candidate,
        1 as candidate_rank
    from unit_keys
    where unit_text is not null

),

unit_matches as (

    select
        unit_candidates.analyte,
        unit_candidates.unit_code,
        unit_candidates.unit_text,
        unit_aliases.ucum_unit,
        row_number() over (
            partition by unit_candidates.analyte, unit_candidates.unit_code, unit_candidates.unit_text
            order by
                unit_candidates.candidate_rank,
                case when unit_aliases.analyte is not null then 0 else 1 end,
                case when unit_aliases.unit_alias = unit_candidates.candidate then 0 else 1 end
        ) as match_rank
    from unit_candidates
    inner join unit_aliases
        on lower(unit_aliases.unit_alias) = lower(unit_candidates.candidate)
        and (unit_candidates.analyte = unit_aliases.analyte or unit_aliases.analyte is null)

),

resolved_units as (

    select * from unit_matches
    where match_rank = 1

),

with_ucum as (

    select
        with_text.*,
        case
            -- a log10 code reports log10 copies whatever copies unit it carries
            when with_text.is_log10
                and coalesce(resolved_units.ucum_unit, text_units.ucum_unit, '{copies}/mL') = '{copies}/mL'
                then '{log_copies}/mL'
            when with_text.unit_code is null and with_text.unit_text is null
                and with_text.text_unit is not null
                then text_units.ucum_unit
            when with_text.unit_code is null and with_text.unit_text is null
                then with_text.default_ucum
            else resolved_units.ucum_unit
        end as ucum_unit,
        coalesce(with_text.value_numeric, with_text.text_number, coded_scores.score) as value_number,
        -- a text that is not a number, a qualitative answer or a number with a known unit
        with_text.is_text_number and (
            with_text.text_number is null
            or (with_text.text_unit is not null and text_units.ucum_unit is null)
        ) as is_unreadable_text,
        -- the unit inside the text disagrees with the unit sent
        coalesce(
            with_text.text_unit is not null
            and text_units.ucum_unit is not null
            and (with_text.unit_code is not null or with_text.unit_text is not null)
            and coalesce(resolved_units.ucum_unit, '') <> text_units.ucum_unit,
            false
        ) as is_unit_conflict
    from with_text
    left join resolved_units
        on with_text.analyte = resolved_units.analyte
        and coalesce(with_text.unit_code, '') = coalesce(resolved_units.unit_code, '')
        and coalesce(with_text.unit_text, '') = coalesce(resolved_units.unit_text, '')
    left join resolved_units as text_units
        on with_text.analyte = text_units.analyte
        and text_units.unit_code is null
        and with_text.text_unit = text_units.unit_text
    left join coded_scores
        on with_text.value_numeric is null
        and with_text.analyte = coded_scores.analyte
        and with_text.value_code = coded_scores.code

),

-- 5b. conversion to the canonical unit
converted as (

    select
        with_ucum.*,
        (
            with_ucum.ucum_unit is not null
            and (with_ucum.ucum_unit = with_ucum.canonical_unit or unit_conversions.analyte is not null)
        ) as is_convertible,
        case
            when with_ucum.ucum_unit = with_ucum.canonical_unit then with_ucum.value_number
            when unit_conversions.analyte is not null then {{ convert_to_canonical(
                'with_ucum.value_number', 'unit_conversions.multiply_by',
                'unit_conversions.divide_by', 'unit_conversions.transform') }}
        end as value_converted,
        case
            when with_ucum.ucum_unit = with_ucum.canonical_unit then with_ucum.ref_high
            when unit_conversions.analyte is not null then {{ convert_to_canonical(
                'with_ucum.ref_high', 'unit_conversions.multiply_by',
                'unit_conversions.divide_by', 'unit_conversions.transform') }}
        end as ref_high_canonical,
        case
            when with_ucum.ucum_unit = with_ucum.canonical_unit then with_ucum.ref_low
            when unit_conversions.analyte is not null then {{ convert_to_canonical(
                'with_ucum.ref_low', 'unit_conversions.multiply_by',
                'unit_conversions.divide_by', 'unit_conversions.transform') }}
        end as ref_low_canonical
    from with_ucum
    left join unit_conversions
        on with_ucum.analyte = unit_conversions.analyte
        and with_ucum.ucum_unit = unit_conversions.from_ucum

),

-- 6. plausibility and the value issue
checked as (

    select
        converted.*,
        case
            when converted.is_unreadable_text then 'non_numeric'
            when converted.is_unit_conflict then 'unit_conflict'
            when converted.value_number is null and converted.value_qualitative is not null then null
            when converted.value_number is null and converted.value_code is not null then null
            when converted.value_number is null and converted.value_text is not null
                then 'non_numeric'
            when converted.value_number is null then 'no_value'
            when not converted.is_convertible then 'unmapped_unit'
            when converted.value_converted < plausibility_ranges.low
                or converted.value_converted > plausibility_ranges.high
                then 'implausible'
        end as value_issue
    from converted
    left join plausibility_ranges
        on converted.analyte = plausibility_ranges.analyte

),

final as (

    select
        -- ids
        {{ dbt.concat(["evidence_source", "':'", "record_id"]) }} as observation_id,
        patient_mrn,
        evidence_source,
        record_id as evidence_id,
        source_file,
        order_id,
        -- code
        resolved_loinc as loinc,
        local_code,
        facility,
        code_display,
        category,
        analyte,
        scale,
        status,
        -- timestamps and dates
        effective_at,
        {{ date_in_timezone('effective_at', timezone_name()) }} as effective_date,
        issued_at,
        -- value as sent (a number read from a text value: its number, comparator and unit)
        coalesce(value_comparator, text_comparator) as value_comparator,
        coalesce(value_numeric, case when not is_unreadable_text then text_number end) as value_raw,
        coalesce(unit_text, unit_code, case when not is_unreadable_text then text_unit end) as unit_raw,
        ucum_unit,
        -- value in the canonical unit
        case when value_issue is null then value_converted end as value_canonical,
        canonical_unit,
        value_issue,
        -- coded and text values; qualitative answer (not_detected, detected_below_lloq, detected)
        value_qualitative,
        value_code,
        value_code_system,
        value_text,
        -- reference range
        ref_high_canonical,
        ref_low_canonical,
        ref_high as ref_high_raw,
        ref_low as ref_low_raw,
        ref_text,
        abnormal_flag,
        -- method and body site (tumor measurements)
        method_code,
        method_system,
        method_text,
        body_site_code,
        body_site_system,
        body_site_text,
        short_axis_mm,
        value_type,
        -- lineage
        loaded_at
    from checked

)

select * from final
