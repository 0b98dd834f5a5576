-- One row per (patient, trial, cohort, criterion) with exactly one status and the evidence
-- behind it (docs/specification.md#criterion-evaluations). Criterion models (int_criteria__*)
-- decide per (trial, criterion, patient); the cohorts a criterion applies to come from
-- config.trial_criteria. Pseudonymized: patient_key only, no MRN, name or birth date.
with

criteria as (

    select * from {{ ref('stg_config__trial_criteria') }}

),

population as (

    select * from {{ ref('int_screening__population') }}

),

evaluations as (

    {% for model in [
        'int_criteria__age',
        'int_criteria__diagnosis',
        'int_criteria__ici_refractory_progression',
        'int_criteria__measurable_disease',
        'int_criteria__performance_status',
        'int_criteria__labs',
        'int_criteria__renal',
        'int_criteria__hiv',
        'int_criteria__review',
    ] %}
    select
        trial_id,
        criterion_id,
        patient_mrn,
        status,
        value_numeric,
        value_unit,
        threshold,
        uln,
        uln_source,
        evidence_source,
        evidence_id,
        evidence_at,
        reason
    from {{ ref(model) }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

)

select
    -- ids
    cast({{ run_id() }} as {{ dbt.type_string() }}) as run_id,
    {{ screening_date() }} as screening_date,
    criteria.trial_id,
    criteria.cohort_id,
    population.patient_key,
    criteria.criterion_id,

    -- decision
    evaluations.status,
    evaluations.value_numeric,
    evaluations.value_unit,
    evaluations.threshold,
    evaluations.uln,
    evaluations.uln_source,

    -- evidence
    evaluations.evidence_source,
    evaluations.evidence_id,
    evaluations.evidence_at,
    evaluations.reason

from criteria
inner join evaluations
    on criteria.trial_id = evaluations.trial_id
    and criteria.criterion_id = evaluations.criterion_id
inner join population
    on evaluations.trial_id = population.trial_id
    and evaluations.patient_mrn = population.patient_mrn
