-- int_patients__by_source: one row per MRN and feed (docs/decisions.md "Demographics merged
-- field by field"). Each field is the latest value that feed sent for the patient that is not
-- blank: a later blank never erases a known value, and a later value from the same feed
-- corrects its own earlier one ("latest" = loaded last, then the later file and position).
-- A sex of `unknown` (or one staging cannot read) counts as blank. Records of an MRN retired by
-- a merge are already under the surviving MRN (staging, macro surviving_mrn).

with

unioned as (

    select * from {{ ref('stg_fhir__patients') }}
    union all
    select * from {{ ref('stg_hl7__patients') }}
    union all
    select * from {{ ref('stg_csv__patients') }}

),

records as (

    select
        unioned.*,
        case when unioned.sex in ('male', 'female', 'other') then unioned.sex end as known_sex
    from unioned
    where unioned.patient_mrn is not null

),

{%- set latest = "loaded_at desc, source_file desc, source_position desc" %}

fields as (

    select
        patient_mrn,
        evidence_source,
        row_number() over (
            partition by patient_mrn, evidence_source order by {{ latest }}
        ) as version_rank,
        {%- for field in ['birth_date', 'known_sex', 'family_name', 'given_name', 'deceased_at'] %}
        first_value({{ field }}) over (
            partition by patient_mrn, evidence_source
            order by case when {{ field }} is null then 1 else 0 end, {{ latest }}
        ) as {{ field }},
        {%- endfor %}
        -- the record the birth date came from (the age criterion's evidence)
        first_value(record_id) over (
            partition by patient_mrn, evidence_source
            order by case when birth_date is null then 1 else 0 end, {{ latest }}
        ) as birth_date_record_id,
        first_value(loaded_at) over (
            partition by patient_mrn, evidence_source
            order by case when birth_date is null then 1 else 0 end, {{ latest }}
        ) as birth_date_loaded_at,
        -- when the latest value of a field was sent, to rank feeds for fields not checked
        -- for conflicts (names, death)
        first_value(loaded_at) over (
            partition by patient_mrn, evidence_source
            order by
                case when family_name is null and given_name is null then 1 else 0 end,
                {{ latest }}
        ) as name_loaded_at,
        record_id as latest_record_id,
        source_file as latest_source_file,
        loaded_at as latest_loaded_at
    from records

)

select
    -- ids
    patient_mrn,
    evidence_source,
    -- demographics: the feed's latest known value of each field
    birth_date,
    known_sex as sex,
    family_name,
    given_name,
    deceased_at,
    -- lineage
    birth_date_record_id,
    birth_date_loaded_at,
    name_loaded_at,
    latest_record_id,
    latest_source_file,
    latest_loaded_at
from fields
where version_rank = 1
