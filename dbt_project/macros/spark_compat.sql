{#
    Spark (dbt-spark, `method: session`) implementations of what the project needs and the
    adapter gets wrong. Only `spark__` variants live here; DuckDB and PostgreSQL never render
    them. The project's own cross-database macros (type_double, clinical_double,
    date_in_timezone) carry their spark__ variants beside the default ones.
#}

{#-
    Seeds. dbt-spark 1.11's spark__load_csv_rows binds every value with Python string
    formatting on the session connection: an empty cell becomes the string 'None' and a
    quote inside a value ("the site laboratory's range") breaks the statement. This
    renders each cell as a Spark SQL literal instead: null, true/false, a number, or a
    string with backslash and quote escaped (Spark string literals escape with a backslash;
    two adjacent literals concatenate, so '' is not an escaped quote).
-#}
{% macro spark__load_csv_rows(model, agate_table) %}
    {%- set batch_size = get_batch_size() -%}
    {%- set column_override = model['config'].get('column_types', {}) -%}
    {%- set statements = [] -%}
    {%- for chunk in agate_table.rows | batch(batch_size) -%}
        {%- set sql -%}
            insert into {{ this.render() }} values
            {% for row in chunk -%}
                ({%- for col_name in agate_table.column_names -%}
                    {%- set inferred_type = adapter.convert_type(agate_table, loop.index0) -%}
                    {%- set type = column_override.get(col_name, inferred_type) -%}
                    cast({{ trialscreen.spark_seed_literal(row[loop.index0]) }} as {{ type }})
                    {%- if not loop.last %}, {% endif -%}
                {%- endfor -%})
                {%- if not loop.last %},
            {% endif -%}
            {%- endfor %}
        {%- endset -%}
        {%- do adapter.add_query(sql, abridge_sql_log=True) -%}
        {%- if loop.index0 == 0 -%}
            {%- do statements.append(sql) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(statements[0] if statements else '') }}
{% endmacro %}

{% macro spark_seed_literal(value) -%}
    {%- if value is none -%}
        null
    {%- elif value is sameas true -%}
        true
    {%- elif value is sameas false -%}
        false
    {%- elif value is number -%}
        {{ value }}
    {%- else -%}
        '{{ value | string | replace("\\", "\\\\") | replace("'", "\\'") }}'
    {%- endif -%}
{%- endmacro %}
