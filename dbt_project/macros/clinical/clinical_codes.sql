{#
    Fixed codes of the standards the rules are written against (not trial parameters and not
    site value sets, which live in seeds): DICOM modalities and SNOMED CT concepts named by
    RECIST 1.1 and docs/clinical-rules.md#coding-of-clinical-inputs. Returned as Jinja lists so
    models render them as SQL literals from one place.
#}
{% macro clinical_codes() -%}
    {{ return({
        'recist_small_lesion_modalities': ['CT', 'MR'],
        'recist_chest_xray_modalities': ['CR', 'DX'],
        'recist_caliper_text': 'caliper',
        'lymph_node_body_site': '59441001',
        'disease_worsened': '271299001',
        'not_detected': '260415000',
    }) }}
{%- endmacro %}

{#- A Jinja list as a SQL `in (...)` list of string literals. -#}
{% macro sql_in_list(values) -%}
    ({%- for v in values -%}'{{ v }}'{{ ", " if not loop.last }}{%- endfor -%})
{%- endmacro %}
