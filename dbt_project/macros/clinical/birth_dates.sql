{# A recorded birth date no patient can have: before 1900, or after the day the record was
   landed (`loaded_at`, naive UTC; one day of slack for the zones ahead of UTC). Such a
   patient is screened with age unknown (docs/decisions.md, "Per-record containment"). #}
{% macro birth_date_implausible(birth_date, loaded_at) -%}
    coalesce(
        {{ birth_date }} < cast('1900-01-01' as date)
        or {{ birth_date }} > cast({{ dbt.dateadd('day', 1, loaded_at) }} as date),
        false
    )
{%- endmacro %}
