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

{#-
    dbt.listagg. dbt-spark's version ignores `order by` (with a warning) and returns '' for
    a group whose values are all null; DuckDB's and PostgreSQL's string_agg keep the order and
    return null. This one sorts the collected values by the order-by keys (ascending keys,
    ties broken by the value, so the result is deterministic) and returns null when nothing
    was collected.
-#}
{% macro spark__listagg(measure, delimiter_text, order_by_clause, limit_num) -%}
    {%- set keys = [] -%}
    {%- if order_by_clause -%}
        {%- set clause = order_by_clause | trim -%}
        {%- if clause[:8] | lower != 'order by' -%}
            {{ exceptions.raise_compiler_error("listagg on spark: order_by_clause must start with 'order by': " ~ clause) }}
        {%- endif -%}
        {#- split the keys at top-level commas only: `order by coalesce(a, b), c` -#}
        {%- set ns = namespace(depth=0, current='', parts=[]) -%}
        {%- for ch in clause[8:] -%}
            {%- if ch == '(' -%}{%- set ns.depth = ns.depth + 1 -%}
            {%- elif ch == ')' -%}{%- set ns.depth = ns.depth - 1 -%}
            {%- endif -%}
            {%- if ch == ',' and ns.depth == 0 -%}
                {%- do ns.parts.append(ns.current) -%}
                {%- set ns.current = '' -%}
            {%- else -%}
                {%- set ns.current = ns.current ~ ch -%}
            {%- endif -%}
        {%- endfor -%}
        {%- do ns.parts.append(ns.current) -%}
        {%- for key in ns.parts -%}
            {%- set key = key | trim -%}
            {%- set lowered = key | lower -%}
            {%- if lowered.endswith(' desc') or ' nulls ' in lowered -%}
                {{ exceptions.raise_compiler_error("listagg on spark supports ascending order-by keys only: " ~ clause) }}
            {%- endif -%}
            {%- do keys.append(key[:-4] | trim if lowered.endswith(' asc') else key) -%}
        {%- endfor -%}
    {%- endif -%}
    {%- set fields = [] -%}
    {%- for key in keys -%}
        {%- do fields.append('(' ~ key ~ ') as k' ~ loop.index0) -%}
    {%- endfor -%}
    {%- do fields.append('cast(' ~ measure ~ ' as string) as v') -%}
    {%- set collected -%}
        array_sort(collect_list(case when ({{ measure }}) is not null then struct({{ fields | join(', ') }}) end))
    {%- endset -%}
    {%- set values -%}
        transform({{ collected }}, x -> x.v)
    {%- endset -%}
    {%- if limit_num -%}
        {%- set values -%}slice({{ values }}, 1, {{ limit_num }}){%- endset -%}
    {%- endif -%}
    case
        when size({{ collected }}) > 0 then array_join({{ values }}, {{ delimiter_text }})
    end
{%- endmacro %}
