-- Each listed column of a model holds only its accepted values (nulls pass, as in dbt's
-- accepted_values), for every such column in one test: one row per value found outside its
-- column's list, with the column and how many rows hold it (a column-level accepted_values
-- test per column costs a dbt node and a query each; docs/decisions.md,
-- "What a night's dbt build runs").
{% test accepted_values_columns(model, columns) %}
    {% for column, values in columns.items() -%}
    select
        '{{ column }}' as column_name,
        cast({{ column }} as {{ dbt.type_string() }}) as value,
        count(*) as n_rows
    from {{ model }}
    where
        {{ column }} is not null
        and {{ column }} not in (
            {%- for value in values %}'{{ value }}'{{ ", " if not loop.last }}{% endfor -%}
        )
    group by {{ column }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
{% endtest %}
