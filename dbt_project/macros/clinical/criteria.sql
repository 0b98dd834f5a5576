{#
    Building blocks of criterion decisions (docs/specification.md#criterion-statuses).
    Every argument is a SQL expression.
    Unit tests: models/intermediate/clinical/_clinical__unit_tests.yml.
#}

{#- Decide `value operator threshold` for a result that may carry a comparator
    (`<`, `<=`, `>`, `>=`, or null for an exact value). A comparator result is decided only
    when every value it allows gives the same answer (docs/clinical-rules.md#comparator-results:
    ANC `>5.0` meets >= 1.0, `<0.5` fails, `<2.0` is unknown). Returns 'met', 'not_met',
    'unknown', or null when the value or the threshold is null. `operator` is a SQL
    expression ('>=' etc.). -#}
{% macro comparator_status(value, comparator, operator, threshold) -%}
    case
        when {{ value }} is null or {{ threshold }} is null then null
        -- exact value
        when {{ comparator }} is null or {{ comparator }} = '' then
            case
                when {{ operator }} = '>=' then case when {{ value }} >= {{ threshold }} then 'met' else 'not_met' end
                when {{ operator }} = '>' then case when {{ value }} > {{ threshold }} then 'met' else 'not_met' end
                when {{ operator }} = '<=' then case when {{ value }} <= {{ threshold }} then 'met' else 'not_met' end
                when {{ operator }} = '<' then case when {{ value }} < {{ threshold }} then 'met' else 'not_met' end
            end
        -- the true value lies above the reported one: x > v (or x >= v)
        when {{ comparator }} in ('>', '>=') then
            case
                when {{ operator }} = '>=' and {{ value }} >= {{ threshold }} then 'met'
                when {{ operator }} = '>' and ({{ value }} > {{ threshold }}
                    or ({{ comparator }} = '>' and {{ value }} >= {{ threshold }})) then 'met'
                when {{ operator }} = '<=' and ({{ value }} > {{ threshold }}
                    or ({{ comparator }} = '>' and {{ value }} >= {{ threshold }})) then 'not_met'
                when {{ operator }} = '<' and {{ value }} >= {{ threshold }} then 'not_met'
                else 'unknown'
            end
        -- the true value lies below the reported one: x < v (or x <= v)
        when {{ comparator }} in ('<', '<=') then
            case
                when {{ operator }} = '<=' and {{ value }} <= {{ threshold }} then 'met'
                when {{ operator }} = '<' and ({{ value }} < {{ threshold }}
                    or ({{ comparator }} = '<' and {{ value }} <= {{ threshold }})) then 'met'
                when {{ operator }} = '>=' and ({{ value }} < {{ threshold }}
                    or ({{ comparator }} = '<' and {{ value }} <= {{ threshold }})) then 'not_met'
                when {{ operator }} = '>' and {{ value }} <= {{ threshold }} then 'not_met'
                else 'unknown'
            end
        else 'unknown'
    end
{%- endmacro %}

{#- The comparator of 1/x (or of any decreasing function of x): `<` becomes `>`. Used for
    Cockcroft-Gault, which falls as creatinine rises. -#}
{% macro flip_comparator(comparator) -%}
    case {{ comparator }}
        when '<' then '>'
        when '<=' then '>='
        when '>' then '<'
        when '>=' then '<='
    end
{%- endmacro %}

{#- Two statuses computed under different assumptions (e.g. both sexes in Cockcroft-Gault):
    decided only when they agree (docs/clinical-rules.md#cockcroft-gault). -#}
{% macro agree_status(a, b) -%}
    case
        when {{ a }} is null or {{ b }} is null then null
        when {{ a }} = {{ b }} then {{ a }}
        else 'unknown'
    end
{%- endmacro %}

{#- The operator as a reason reads it. -#}
{% macro operator_display(operator) -%}
    case {{ operator }} when '>=' then '≥' when '<=' then '≤' else {{ operator }} end
{%- endmacro %}

{#- The operator that fails `operator` (for "0.8 < 1.0" in a not_met reason). -#}
{% macro operator_negated_display(operator) -%}
    case {{ operator }} when '>=' then '<' when '>' then '≤' when '<=' then '>' when '<' then '≥' end
{%- endmacro %}
