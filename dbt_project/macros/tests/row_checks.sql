{#
    Generic test: the row checks of one model, seed or source table in one dbt node
    (docs/decisions.md, "One row-checks test per model"). Each check is a branch of one
    query; the test fails with one row per finding, saying which check, which column, the
    value found and in how many rows:

    - not_null: columns that must never be null (one scan for all of them; a row per column
      that has nulls, value null);
    - accepted_values: {column: [values]} (nulls pass, as in dbt's accepted_values; a row
      per value outside its column's list);
    - unique: columns whose non-null values are unique each (as dbt's unique: nulls ignored;
      a row per repeated value);
    - unique_combinations: lists of columns whose combination is unique (nulls compare
      equal, as in GROUP BY; a row per repeated combination, its values joined by '|').

    A column-level dbt test costs a dbt node (compiled, run, its result recorded) for each
    check: 144 of them on 60 models were about 45 % of a 40-patient build's wall time.
#}
{% test row_checks(model, not_null=[], accepted_values={}, unique=[], unique_combinations=[]) %}
    {%- set text = dbt.type_string() -%}
    {%- set count = dbt.type_bigint() -%}
    {%- set branches = [] -%}
    {%- for column in not_null -%}
        {%- do branches.append(
            "select 'not_null' as check_name, '" ~ column ~ "' as column_name, "
            ~ "cast(null as " ~ text ~ ") as value, cast(nulls_" ~ loop.index ~ " as " ~ count
            ~ ") as n_rows from null_counts where nulls_" ~ loop.index ~ " > 0"
        ) -%}
    {%- endfor -%}
    {%- for column, values in accepted_values.items() -%}
        {%- set listed = [] -%}
        {%- for value in values -%}{%- do listed.append("'" ~ value ~ "'") -%}{%- endfor -%}
        {%- do branches.append(row_checks_finding(
            model, "accepted_values", column, "cast(" ~ column ~ " as " ~ text ~ ")", [column],
            " where " ~ column ~ " is not null and " ~ column ~ " not in ("
            ~ listed | join(", ") ~ ")", ""
        )) -%}
    {%- endfor -%}
    {%- for column in unique -%}
        {%- do branches.append(row_checks_finding(
            model, "unique", column, "cast(" ~ column ~ " as " ~ text ~ ")", [column],
            " where " ~ column ~ " is not null", " having count(*) > 1"
        )) -%}
    {%- endfor -%}
    {%- for columns in unique_combinations -%}
        {%- set cast_columns = [] -%}
        {%- for column in columns -%}
            {%- do cast_columns.append("cast(" ~ column ~ " as " ~ text ~ ")") -%}
        {%- endfor -%}
        {%- do branches.append(row_checks_finding(
            model, "unique_combination", columns | join(", "),
            "concat_ws('|', " ~ cast_columns | join(", ") ~ ")", columns, "",
            " having count(*) > 1"
        )) -%}
    {%- endfor %}
    {%- if not_null %}
    with null_counts as (
        select
            {%- for column in not_null %}
            sum(case when {{ column }} is null then 1 else 0 end) as nulls_{{ loop.index }}
            {{- "," if not loop.last }}
            {%- endfor %}
        from {{ model }}
    )
    {%- endif %}

    {{ branches | join("\n    union all\n    ") }}
{% endtest %}

{#- One branch of row_checks that counts the rows of each group of `group_by` found by
    `where` (and kept by `having`): the check, its column(s), the value and the count. -#}
{% macro row_checks_finding(model, check, column_name, value, group_by, where, having) -%}
    {{- "select '" ~ check ~ "' as check_name, '" ~ column_name ~ "' as column_name, " ~ value
        ~ " as value, cast(count(*) as " ~ dbt.type_bigint() ~ ") as n_rows from " ~ model
        ~ where ~ " group by " ~ group_by | join(", ") ~ having -}}
{%- endmacro %}
