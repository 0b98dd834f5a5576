{# The feeds whose flag (1/0 expressions, in the order FHIR, HL7, CSV) is set, as a reader
   names them: 'FHIR and HL7', 'FHIR, HL7 and CSV'; null when fewer than two. #}
{% macro feed_list(fhir, hl7, csv) -%}
    case
        when {{ fhir }} = 1 and {{ hl7 }} = 1 and {{ csv }} = 1 then 'FHIR, HL7 and CSV'
        when {{ fhir }} = 1 and {{ hl7 }} = 1 then 'FHIR and HL7'
        when {{ fhir }} = 1 and {{ csv }} = 1 then 'FHIR and CSV'
        when {{ hl7 }} = 1 and {{ csv }} = 1 then 'HL7 and CSV'
    end
{%- endmacro %}

{# The MRN a record counts for (docs/decisions.md "Patient merges and test patients"): the
   final surviving MRN when the record's MRN was retired by a merge, else that MRN itself.
   Applied to every staging model's patient_mrn (stg_lineage_columns), so each record of a
   retired MRN counts for the surviving patient everywhere downstream. The staging model joins
   int_patient_merges (one row per retired MRN) with join_surviving_mrn(mrn) and
   stg_lineage_columns reads `coalesce(patient_merges.surviving_mrn, mrn)`. A join, not a
   scalar subquery in the select list: DuckDB decorrelates that into a join whose outer side
   (every column of every raw row) it first materializes, about a third of an incremental
   night's int_observations at a million patients (docs/benchmarks.md, "Session 19"). #}
{% macro join_surviving_mrn(mrn) -%}
    left join (
        select
            retired_mrn,
            max(surviving_mrn) as surviving_mrn
        from {{ ref('int_patient_merges') }}
        group by retired_mrn
    ) as patient_merges
        on {{ mrn }} = patient_merges.retired_mrn
{%- endmacro %}

{% macro surviving_mrn(mrn) -%}
    coalesce(patient_merges.surviving_mrn, {{ mrn }})
{%- endmacro %}

{% macro stg_patient_merge_columns(feed) -%}
        -- lineage
        '{{ feed }}' as evidence_source,
        {{ clean_text('source.record_id') }} as record_id,
        source.source_file,
        cast(source.source_position as {{ dbt.type_bigint() }}) as source_position,
        source.record_hash,
        source.run_id,
        cast(source.loaded_at as {{ dbt.type_timestamp() }}) as loaded_at,
        cast(source.load_id as {{ dbt.type_bigint() }}) as load_id,
        -- merge: the retired MRN's records count for the surviving MRN
        {{ clean_text('source.prior_mrn') }} as retired_mrn,
        coalesce({{ clean_text('source.mrn') }}, {{ clean_text('source.patient_ref') }})
            as surviving_mrn,
        {{ clean_text('source.event_type') }} as event_type,
        {{ instant_utc('source.merged_at', 'source.merged_at_offset_min') }} as merged_at
{%- endmacro %}
