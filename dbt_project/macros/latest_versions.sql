{#
    The latest delivered version of every record of one entity across the three feeds:
    stg_fhir__<entity> ∪ stg_hl7__<entity> ∪ stg_csv__<entity> (identical columns), records
    without a resolved MRN dropped, and of the versions of one (evidence_source, record_id)
    the most recently loaded kept (a FHIR resource re-delivered with changes replaces the
    earlier one). Used as the body of a CTE by int_observations, int_conditions and
    int_medications.
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
    ) as versions
    where version_rank = 1
{%- endmacro %}
