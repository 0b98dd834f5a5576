-- The rule registry (dbt_project.yml var criterion_rules; docs/adding_a_rule.md): a criterion
-- of the trial configuration whose rule has no registered model fails the build here, before
-- criterion_evaluations, instead of vanishing from it.
select
    trial_id,
    criterion_id,
    rule
from {{ ref('stg_config__trial_criteria') }}
where rule is null
    or rule not in (
        {%- for rule in criterion_rules() %}
        '{{ rule }}'{% if not loop.last %},{% endif %}
        {%- endfor %}
    )
