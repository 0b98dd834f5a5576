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
   final surviving MRN when `mrn` was retired by a merge, else `mrn` itself. Applied to every
   staging model's patient_mrn (stg_lineage_columns), so each record of a retired MRN counts
   for the surviving patient everywhere downstream. A scalar lookup in int_patient_merges
   (one row per retired MRN). #}
{% macro surviving_mrn(mrn) -%}
    coalesce(
        (
            select max(patient_merges.surviving_mrn)
            from {{ ref('int_patient_merges') }} as patient_merges
            where patient_merges.retired_mrn = {{ mrn }}
        ),
        {{ mrn }}
    )
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
