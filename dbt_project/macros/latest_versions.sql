{#
    The latest delivered version of every record of one entity across the three feeds:
    stg_fhir__<entity> ∪ stg_hl7__<entity> ∪ stg_csv__<entity> (identical columns), records
    without a resolved MRN dropped, and of the versions of one (evidence_source, record_id)
    the most recently loaded kept (a FHIR resource re-delivered with changes replaces the
    earlier one). Used as the body of a CTE by int_observations, int_conditions and
    int_medications.

    On an incremental night (macros/incremental.sql) only the changed patients' rows are
    returned: every version of each record any version of which belongs to a changed patient
    is ranked (a record re-delivered for another patient must still lose to its later
    version), then the latest versions of the changed patients are kept.
#}
{% macro latest_versions(entity) -%}
    select * from (
        select
            unioned.*,
            row_number() over (
                partition by evidence_source, record_id
                order by loaded_at desc, source_file desc, source_position desc
            ) as version_rank
        from (
            select * from {{ ref('stg_fhir__' ~ entity) }}
            union all
            select * from {{ ref('stg_hl7__' ~ entity) }}
            union all
            select * from {{ ref('stg_csv__' ~ entity) }}
        ) as unioned
        where patient_mrn is not null
        {%- if is_incremental_night() %}
            -- a non-correlated key list: a correlated `exists` had DuckDB materialize every
            -- column of every staging row before the semi-join (docs/benchmarks.md,
            -- "Session 19")
            and (unioned.evidence_source, coalesce(unioned.record_id, '')) in (
                select
                    touched.evidence_source,
                    coalesce(touched.record_id, '')
                from (
                    select evidence_source, record_id, patient_mrn from {{ ref('stg_fhir__' ~ entity) }}
                    union all
                    select evidence_source, record_id, patient_mrn from {{ ref('stg_hl7__' ~ entity) }}
                    union all
                    select evidence_source, record_id, patient_mrn from {{ ref('stg_csv__' ~ entity) }}
                ) as touched
                where touched.patient_mrn is not null
                    {{ changed_patients_filter('touched') }}
            )
        {%- endif %}
    ) as versions
    where version_rank = 1
        {{- changed_patients_filter('versions') }}
{%- endmacro %}
