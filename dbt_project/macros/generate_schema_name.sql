{#
    Custom schema names are used as-is (staging, intermediate, marts, reference, restricted,
    audit) instead of dbt's default `<target_schema>_<custom>`: the warehouse contract
    (docs/specification.md#schemas) names these schemas, and analysts' grants refer to them.

    Write-audit-publish: with `--vars '{wap: true}'` (what `trialscreen run` and the DAG
    pass) the published schemas `marts` and `restricted` are written as `marts_candidate`
    and `restricted_candidate`; the pipeline validates those and only then copies them over
    the published tables (trialscreen.pipeline.publish). A plain `dbt build` writes the
    published schemas directly, for development.
    Nodes without a custom schema land in the target's schema.
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- elif var('wap', false) and (custom_schema_name | trim) in ['marts', 'restricted'] -%}
        {{ custom_schema_name | trim }}_candidate
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
