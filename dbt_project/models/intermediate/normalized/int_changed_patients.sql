-- int_changed_patients: on an incremental night (macros/incremental.sql), every patient whose
-- rows in int_observations, int_conditions or int_medications a load newer than
-- var('incremental_after_load_id') can have changed; those models recompute these patients
-- only. Empty when the variable is absent (the models are then rebuilt whole), and when no
-- raw table has a row of a newer load (var('incremental_new_loads') false: nothing to read).
--
-- A patient changes when a new load brings
--   * a version of one of their records, or a coding of it: the patient of every version of
--     that record counts (a record re-delivered for another patient leaves the first one);
--   * a patient merge (HL7 A40/A34/A18, CSV): every MRN any merge record names, retired or
--     surviving, counts (a new merge can re-route or, closing a cycle, undo earlier ones);
--   * a FHIR Patient: the MRN of every version of that Patient and the patient of every FHIR
--     record whose subject is that Patient (the subject may now resolve to another MRN).

{%- set after = incremental_after_load_id() %}
{%- set entities = ['observations', 'conditions', 'medications'] %}
{%- set feeds = ['fhir', 'hl7', 'csv'] %}

-- The models read on an incremental night, declared whatever the variable: the project is
-- parsed once without the run's variables (trialscreen.transform RUN_VARS), and a ref only
-- the incremental branch renders would be missing from the parsed dependencies.
{%- for feed in feeds %}
{%- for entity in entities + ['codings'] %}
-- depends_on: {{ ref('stg_' ~ feed ~ '__' ~ entity) }}
{%- endfor %}
{%- endfor %}
-- depends_on: {{ ref('stg_hl7__patient_merges') }}, {{ ref('stg_csv__patient_merges') }}
-- depends_on: {{ ref('stg_fhir__patients') }}

{%- if after is none or not incremental_has_new_loads() %}

select cast(null as {{ dbt.type_string() }}) as patient_mrn
where 1 = 0

{%- else %}

with

records as (

    {%- for entity in entities %}
    {%- for feed in feeds %}
    select
        '{{ entity }}' as entity,
        evidence_source,
        record_id,
        patient_ref,
        patient_mrn,
        load_id
    from {{ ref('stg_' ~ feed ~ '__' ~ entity) }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}

),

codings as (

    {%- for feed in feeds %}
    select
        entity,
        evidence_source,
        record_id,
        load_id
    from {{ ref('stg_' ~ feed ~ '__codings') }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}

),

new_records as (

    select distinct
        entity,
        evidence_source,
        record_id
    from records
    where load_id > {{ after }}
    union
    select distinct
        entity,
        evidence_source,
        record_id
    from codings
    where load_id > {{ after }}

),

merge_records as (

    select
        retired_mrn,
        surviving_mrn,
        load_id
    from {{ ref('stg_hl7__patient_merges') }}
    union all
    select
        retired_mrn,
        surviving_mrn,
        load_id
    from {{ ref('stg_csv__patient_merges') }}

),

new_fhir_patients as (

    select distinct patient_ref
    from {{ ref('stg_fhir__patients') }}
    where load_id > {{ after }}
        and patient_ref is not null

),

changed as (

    -- every version of a record with a new version or coding
    select records.patient_mrn
    from records
    inner join new_records
        on records.entity = new_records.entity
        and records.evidence_source = new_records.evidence_source
        and coalesce(records.record_id, '') = coalesce(new_records.record_id, '')
    union all
    -- every MRN a merge names, when a merge record is new
    select merge_records.retired_mrn as patient_mrn
    from merge_records
    where exists (select 1 from merge_records as new_merges where new_merges.load_id > {{ after }})
    union all
    select merge_records.surviving_mrn as patient_mrn
    from merge_records
    where exists (select 1 from merge_records as new_merges where new_merges.load_id > {{ after }})
    union all
    -- a new FHIR Patient: its MRNs (every version) and its records' patients
    select fhir_patients.patient_mrn
    from {{ ref('stg_fhir__patients') }} as fhir_patients
    inner join new_fhir_patients
        on fhir_patients.patient_ref = new_fhir_patients.patient_ref
    union all
    select records.patient_mrn
    from records
    inner join new_fhir_patients
        on records.patient_ref = new_fhir_patients.patient_ref
    where records.evidence_source = 'fhir'

)

select distinct patient_mrn
from changed
where patient_mrn is not null

{%- endif %}
