{#
    Seed local_lab_codes is keyed by (local_code, facility): two laboratories may send the same
    local code for different tests (docs/decisions.md "Lab values as laboratories send them").
    A row naming the observation's facility (HL7 MSH-4, FHIR meta.source, CSV facility; staging
    uppercases it) wins over the row with a blank facility, which applies to any sender.

    join_local_lab_codes(local_code, facility): the two left joins, aliased
    local_by_facility and local_any_facility, against a relation named `local_lab_codes`.
    local_lab_code(column): that column of the row that applies (one CASE, so the columns of
    one row are never mixed with another's). Plain SQL for DuckDB, PostgreSQL and Spark.
#}

{% macro join_local_lab_codes(local_code, facility) -%}
    left join local_lab_codes as local_by_facility
        on {{ local_code }} = upper(trim(local_by_facility.local_code))
        and {{ facility }} = upper(trim(local_by_facility.facility))
    left join local_lab_codes as local_any_facility
        on {{ local_code }} = upper(trim(local_any_facility.local_code))
        and coalesce(trim(local_any_facility.facility), '') = ''
{%- endmacro %}

{% macro local_lab_code(column) -%}
    case
        when local_by_facility.local_code is not null then local_by_facility.{{ column }}
        else local_any_facility.{{ column }}
    end
{%- endmacro %}
