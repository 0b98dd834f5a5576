{%- set codes = clinical_codes() -%}
-- Tumor measurements (LOINC 21889-1) in the tumor window, one row per (trial, lesion
-- observation), classified by RECIST 1.1 (docs/clinical-rules.md#tumor-measurements): CT/MR or a
-- method text containing "caliper" -> the small-lesion size; CR/DX (chest x-ray) -> the chest x-ray
-- size; a lymph node body site -> short axis against the nodal size; no recognized method -> not
-- measurable. Sizes come from config.trial_settings.
with

observations as (

    select * from {{ ref('int_observations') }}

),

population as (

    select * from {{ ref('int_screening__population') }}

),

lesions as (

    select
        population.trial_id,
        population.recist_ct_mr_caliper_mm,
        population.recist_chest_xray_mm,
        population.recist_nodal_short_axis_mm,
        observations.*,
        coalesce(observations.body_site_code = '{{ codes.lymph_node_body_site }}', false) as is_nodal,
        case
            when upper(observations.method_code) in {{ sql_in_list(codes.recist_small_lesion_modalities) }}
                then 'cross_sectional'
            when lower(coalesce(observations.method_text, '')) like '%{{ codes.recist_caliper_text }}%'
                then 'caliper'
            when upper(observations.method_code) in {{ sql_in_list(codes.recist_chest_xray_modalities) }}
                then 'chest_xray'
        end as method_class
    from observations
    inner join population
        on observations.patient_mrn = population.patient_mrn
    where observations.analyte = 'tumor_size'
        and observations.effective_date <= {{ screening_date() }}
        and {{ dbt.datediff('observations.effective_date', screening_date(), 'day') }}
            <= population.tumor_window_days

),

sized as (

    select
        *,
        case
            when method_class is null then null
            when is_nodal then recist_nodal_short_axis_mm
            when method_class = 'chest_xray' then recist_chest_xray_mm
            else recist_ct_mr_caliper_mm
        end as minimum_size_mm
    from lesions

)

select
    -- ids
    trial_id,
    patient_mrn,
    observation_id,
    evidence_source,
    evidence_id,

    -- lesion
    value_canonical as size_mm,
    value_issue,
    method_code,
    method_text,
    method_class,
    is_nodal,
    minimum_size_mm,
    case
        when value_issue is not null or value_canonical is null then null
        when minimum_size_mm is null then false
        else value_canonical >= minimum_size_mm
    end as is_measurable,
    case
        when value_issue is not null or value_canonical is null
            then 'size unusable (' || coalesce(value_issue, 'no value') || ')'
        when method_class is null
            then 'no imaging method recorded: not measurable'
        when value_canonical >= minimum_size_mm
            then 'measurable'
        else 'below the minimum size'
    end as lesion_note,

    -- timestamps
    effective_at,
    effective_date

from sized
