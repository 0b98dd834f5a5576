{#
    Custom schema names are used as-is (staging, intermediate, marts, reference, restricted,
    audit) instead of dbt's default `<target_schema>_<custom>`: the warehouse contract
    (SPEC §7) names these schemas, and analysts' grants refer to them.
    Nodes without a custom schema land in the target's schema.
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
