{# The feeds whose flag (1/0 expressions, in the order FHIR, HL7, CSV) is set, as a reader
   names them: 'FHIR and HL7', 'FHIR, HL7 and CSV'; null when fewer than two. #}
{% macro feed_list(fhir, hl7, csv) -%}
    case
        when {{ fhir }} = 1 and {{ hl7 }} = 1 and {{ csv }} = 1 then 'FHIR, HL7 and CSV'
        when {{ fhir }} = 1 and {{ hl7 }} = 1 then 'FHIR and HL7'
        when {{ fhir }} = 1 and {{ csv }} = 1 then 'FHIR and CSV'
        when {{ hl7 }} = 1 and {{ csv }} = 1 then 'HL7 and CSV'
    end
{%- endmacro %}
