-- The columns of a model that must never be null, checked in one scan: one row per column
-- that has nulls, with how many (a column-level not_null test per column costs a dbt node, a
-- query and a scan each; docs/decisions.md, "One not-null test per model").
{% test not_null_columns(model, column_names) %}
    with null_counts as (
        select
            {%- for column in column_names %}
            sum(case when {{ column }} is null then 1 else 0 end) as nulls_{{ loop.index }}
            {{- "," if not loop.last }}
            {%- endfor %}
        from {{ model }}
    )

    {% for column in column_names -%}
    select '{{ column }}' as column_name, nulls_{{ loop.index }} as null_rows
    from null_counts
    where nulls_{{ loop.index }} > 0
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
{% endtest %}
