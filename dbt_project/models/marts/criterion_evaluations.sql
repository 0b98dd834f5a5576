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

    -- the criterion models of the rule registry (dbt_project.yml var criterion_rules;
    -- docs/adding_a_rule.md): a model left out of the union leaves its criteria without an
    -- evaluation, which the completeness test and the gate's blocking check catch
    {% for model in criterion_models() %}
    select
        trial_id,
        criterion_id,
        patient_mrn,
        status,
        value_numeric,
        value_unit,
        threshold,
        comparator,
        uln,
        uln_source,
        evidence_source,
        evidence_id,
        evidence_at,
        evidence_date,
        valid_until,
        missing_item,
        reason
    from {{ ref(model) }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

next_steps as (

    select * from {{ ref('criterion_next_steps') }}

),

margins as (

    -- the margin to the threshold in the criterion's own direction: positive on the side
    -- that meets it, negative on the side that fails it (docs/decisions.md "Margins, near
    -- flips and valid_until")
    select
        *,
        case
            when comparator in ('>=', '>') then value_numeric - threshold
            when comparator in ('<=', '<') then threshold - value_numeric
        end as margin
    from evaluations

)

select
    -- ids
    cast({{ run_id() }} as {{ dbt.type_string() }}) as run_id,
    {{ screening_date() }} as screening_date,
    criteria.trial_id,
    criteria.cohort_id,
    population.patient_key,
    criteria.criterion_id,
    criteria.label as criterion_label,
    criteria.rule,

    -- decision
    margins.status,
    margins.value_numeric,
    margins.value_unit,
    margins.threshold,
    margins.comparator,
    margins.uln,
    margins.uln_source,

    -- margin to the threshold
    margins.margin,
    case
        when margins.threshold <> 0 then margins.margin / abs(margins.threshold)
    end as margin_relative,
    coalesce(
        margins.status in ('met', 'not_met')
        and margins.valid_until is not null
        and margins.threshold <> 0
        and abs(margins.margin / margins.threshold) <= 0.1,
        false
    ) as near_flip,

    -- evidence
    margins.evidence_source,
    margins.evidence_id,
    margins.evidence_at,
    margins.evidence_date,
    margins.valid_until,

    -- next step for an unknown
    margins.missing_item,
    case
        when margins.status = 'unknown'
            then coalesce(next_steps.next_step, 'Obtain a current result - ' || criteria.label)
    end as next_step,
    margins.reason

from criteria
inner join margins
    on criteria.trial_id = margins.trial_id
    and criteria.criterion_id = margins.criterion_id
inner join population
    on margins.trial_id = population.trial_id
    and margins.patient_mrn = population.patient_mrn
left join next_steps
    on margins.missing_item = next_steps.missing_item
