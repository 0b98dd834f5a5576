{{ config(schema='restricted') }}
-- The coordinator-facing reason of every criterion evaluation (docs/decisions.md, "Free text
-- from source records"): the analysts' marts.criterion_evaluations.reason names codes and
-- seed terms only; `reason_detail` here quotes the source's texts behind it (a condition's
-- display, a drug's text, a unit as sent). Schema `restricted`; never granted to analysts.
with

evaluations as (

    select * from {{ ref('criterion_evaluations') }}

),

population as (

    select * from {{ ref('int_screening__population') }}

),

details as (

    -- the criterion models of the rule registry (dbt_project.yml var criterion_rules); a model
    -- whose reasons hold no source text returns reason_detail null
    {% for model in criterion_models() %}
    select
        trial_id,
        criterion_id,
        patient_mrn,
        reason_detail
    from {{ ref(model) }}
    where reason_detail is not null
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

)

select
    -- ids
    evaluations.run_id,
    evaluations.screening_date,
    evaluations.trial_id,
    evaluations.cohort_id,
    evaluations.patient_key,
    evaluations.criterion_id,

    -- decision and evidence
    evaluations.status,
    evaluations.evidence_source,
    evaluations.evidence_id,
    evaluations.evidence_at,

    -- reasons
    evaluations.reason,
    coalesce(details.reason_detail, evaluations.reason) as reason_detail

from evaluations
inner join population
    on evaluations.trial_id = population.trial_id
    and evaluations.patient_key = population.patient_key
left join details
    on evaluations.trial_id = details.trial_id
    and evaluations.criterion_id = details.criterion_id
    and population.patient_mrn = details.patient_mrn
