-- int_observations: one row per observation that counts, with its value in the analyte's
-- canonical unit (docs/specification.md#normalization).
--
--   1. latest delivered version of every record (a FHIR resource re-delivered with changes:
--      the latest loaded version wins)
--   2. code -> LOINC (raw LOINC, else seed local_lab_codes) -> analyte (seed loinc_analytes);
--      observations of codes the trials do not use are dropped
--   3. HL7/CSV results of the same patient, order and code supersede each other: the latest
--      issued wins (on a tie: a retraction, then a correction, then the latest loaded), so a
--      `corrected` result replaces the `final` it corrects and a later `entered-in-error`
--      retracts it. Statuses preliminary/registered never take part.
--   4. keep final/amended/corrected only (cancelled and entered-in-error are excluded)
--   5. unit spelling -> UCUM (seed unit_aliases; `G/L` resolves by analyte) -> canonical unit
--      (seed unit_conversions), log10 viral loads as 10^x
--   6. plausibility (seed plausibility_ranges): a value out of range is kept and flagged
--      (value_issue = 'implausible') but value_canonical is null.

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


-- 1. latest delivered version of every record
latest_versions as (

    {{ latest_versions('observations') }}

),

-- 2. code resolution
coded as (

    select
        latest_versions.*,
        coalesce(latest_versions.loinc, local_lab_codes.loinc) as resolved_loinc,
        local_lab_codes.analyte as local_analyte,
        local_lab_codes.canonical_unit as local_canonical_unit,
        local_lab_codes.default_ucum as local_default_ucum,
        local_lab_codes.scale as local_scale
    from latest_versions
    left join local_lab_codes
        on latest_versions.local_code = upper(trim(local_lab_codes.local_code))

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
                evidence_source,
                patient_mrn,
                coalesce(resolved_loinc, local_code),
                case
                    when evidence_source in ('hl7', 'csv') and order_id is not null
                        then {{ dbt.concat(["'order:'", "order_id"]) }}
                    else {{ dbt.concat(["'record:'", "record_id"]) }}
                end
            order by
                issued_at desc nulls last,
                case
                    when status in ('cancelled', 'entered-in-error') then 0
                    when status in ('corrected', 'amended') then 1
                    else 2
                end,
                loaded_at desc,
                source_file desc,
                source_position desc
        ) as supersede_rank
    from with_analyte
    where analyte is not null
        and status in ('final', 'amended', 'corrected', 'cancelled', 'entered-in-error')

),

-- 4. results that count
counting as (

    select * from superseded
    where supersede_rank = 1
        and status in ('final', 'amended', 'corrected')

),

-- 5a. unit resolution, once per distinct (analyte, unit code, unit text)
unit_keys as (

    select distinct
        analyte,
        unit_code,
        unit_text
    from counting
    where unit_code is not null or unit_text is not null

),

unit_candidates as (

    -- the UCUM code (FHIR valueQuantity.code) is tried before the human-readable unit
    select analyte, unit_code, unit_text, unit_code as candidate, 0 as candidate_rank
    from unit_keys
    where unit_code is not null
    union all
    select analyte, unit_code, unit_text, unit_text as candidate, 1 as candidate_rank
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
        and (unit_aliases.analyte = unit_candidates.analyte or unit_aliases.analyte is null)

),

resolved_units as (

    select * from unit_matches
    where match_rank = 1

),

with_ucum as (

    select
        counting.*,
        case
            -- a log10 code reports log10 copies whatever copies unit it carries
            when counting.is_log10
                and coalesce(resolved_units.ucum_unit, '{copies}/mL') = '{copies}/mL'
                then '{log_copies}/mL'
            when counting.unit_code is null and counting.unit_text is null
                then counting.default_ucum
            else resolved_units.ucum_unit
        end as ucum_unit,
        coalesce(counting.value_numeric, coded_scores.score) as value_number
    from counting
    left join resolved_units
        on counting.analyte = resolved_units.analyte
        and coalesce(counting.unit_code, '') = coalesce(resolved_units.unit_code, '')
        and coalesce(counting.unit_text, '') = coalesce(resolved_units.unit_text, '')
    left join coded_scores
        on counting.value_numeric is null
        and counting.analyte = coded_scores.analyte
        and counting.value_code = coded_scores.code

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
        code_display,
        category,
        analyte,
        scale,
        status,
        -- timestamps and dates
        effective_at,
        {{ date_in_timezone('effective_at', timezone_name()) }} as effective_date,
        issued_at,
        -- value as sent
        value_comparator,
        value_numeric as value_raw,
        coalesce(unit_text, unit_code) as unit_raw,
        ucum_unit,
        -- value in the canonical unit
        case when value_issue is null then value_converted end as value_canonical,
        canonical_unit,
        value_issue,
        -- coded and text values
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
        -- lineage
        loaded_at
    from checked

)

select * from final
