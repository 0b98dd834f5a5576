-- Tumor measurements (LOINC 21889-1) in the tumor window, one row per (trial, measurement),
-- each decided by RECIST 1.1 (docs/clinical-rules.md#tumor-measurements): the method (seed
-- imaging_methods: DICOM modality, SNOMED procedure, or 'caliper' in the method text) gives the
-- minimum size (chest x-ray 20 mm, CT/MRI/caliper 10 mm); a lymph node (seed lymph_node_sites:
-- SNOMED body site, or its name in the body site text) is judged on its short axis (15 mm).
-- A method RECIST does not accept for measurement (ultrasound, PET) never decides. A measurement
-- without a recognized method is decided only when its size settles it under every rule
-- (non-nodal >= 20 mm measurable, < 10 mm not measurable; nodal short axis against 15 mm);
-- otherwise it is undecided (docs/decisions.md "Tumour measurements as mCODE sends them").
-- measurement_status: measurable | not_measurable | undecided | unusable.
with

observations as (

    select * from {{ ref('int_observations') }}

),

population as (

    select * from {{ ref('int_screening__population') }}

),

imaging_methods as (

    select * from {{ ref('imaging_methods') }}

),

lymph_node_sites as (

    select * from {{ ref('lymph_node_sites') }}

),

in_window as (

    select
        population.trial_id,
        population.recist_ct_mr_caliper_mm,
        population.recist_chest_xray_mm,
        population.recist_nodal_short_axis_mm,
        observations.*
    from observations
    inner join population
        on observations.patient_mrn = population.patient_mrn
    where observations.analyte = 'tumor_size'
        and observations.effective_date <= {{ screening_date() }}
        and {{ dbt.datediff('observations.effective_date', screening_date(), 'day') }}
        <= population.tumor_window_days

),

-- a body site text naming a lymph node, once per distinct text
nodal_texts as (

    select
        texts.body_site_text,
        max(case when lymph_node_sites.code is not null then 1 else 0 end) as is_nodal_text
    from (
        select distinct body_site_text from in_window
        where body_site_text is not null
    ) as texts
    left join lymph_node_sites
        on lymph_node_sites.system = 'text'
        and lower(texts.body_site_text) like {{ dbt.concat(["'%'", "lymph_node_sites.code", "'%'"]) }}
    group by texts.body_site_text

),

-- a method text naming a method (caliper), once per distinct text
method_texts as (

    select
        texts.method_text,
        min(imaging_methods.method) as text_method,
        min(case when imaging_methods.recist_accepts_for_measurement then 1 else 0 end) as accepts
    from (
        select distinct method_text from in_window
        where method_text is not null
    ) as texts
    inner join imaging_methods
        on imaging_methods.system = 'text'
        and lower(texts.method_text) like {{ dbt.concat(["'%'", "imaging_methods.code", "'%'"]) }}
    group by texts.method_text

),

classified as (

    select
        in_window.*,
        -- named after the seed column imaging_methods.method (a keyword to sqlfluff: RF04)
        coalesce(coded_method.method, method_texts.text_method) as method,  -- noqa: RF04
        case
            when coded_method.method is not null then coded_method.recist_accepts_for_measurement
            when method_texts.text_method is not null then method_texts.accepts = 1
        end as method_accepted,
        coalesce(coded_site.code is not null or nodal_texts.is_nodal_text = 1, false) as is_nodal,
        -- the size judged: a nodal lesion's short axis (the value itself unless it is the
        -- longest dimension of an mCODE component), else the longest diameter
        case
            when in_window.value_issue is not null then null
            when coalesce(coded_site.code is not null or nodal_texts.is_nodal_text = 1, false)
                then coalesce(
                        in_window.short_axis_mm,
                        case when coalesce(in_window.value_type, '') <> 'component' then in_window.value_canonical end
                    )
            else in_window.value_canonical
        end as axis_mm
    from in_window
    left join imaging_methods as coded_method
        on coded_method.system in ('dicom', 'snomed')
        and upper(coded_method.code) = in_window.method_code
    left join method_texts
        on in_window.method_text = method_texts.method_text
    left join lymph_node_sites as coded_site
        on coded_site.system = 'snomed'
        and in_window.body_site_code = coded_site.code
    left join nodal_texts
        on in_window.body_site_text = nodal_texts.body_site_text

),

decided as (

    select
        *,
        case
            when method_accepted is null or not method_accepted then null
            when is_nodal then recist_nodal_short_axis_mm
            when method = 'chest x-ray' then recist_chest_xray_mm
            else recist_ct_mr_caliper_mm
        end as minimum_size_mm,
        case
            when value_issue is not null or value_canonical is null then 'unusable'
            when method_accepted = false then 'undecided'
            -- a nodal lesion sent with its longest dimension only: the short axis is no longer
            when is_nodal and axis_mm is null
                then case
                        when value_canonical < recist_nodal_short_axis_mm then 'not_measurable'
                        else 'undecided'
                    end
            when is_nodal
                then case
                        when axis_mm >= recist_nodal_short_axis_mm then 'measurable'
                        else 'not_measurable'
                    end
            when method_accepted and method = 'chest x-ray'
                then case
                        when axis_mm >= recist_chest_xray_mm then 'measurable'
                        else 'not_measurable'
                    end
            when method_accepted
                then case
                        when axis_mm >= recist_ct_mr_caliper_mm then 'measurable'
                        else 'not_measurable'
                    end
            -- no recognized method: decided only when every rule agrees
            when axis_mm >= recist_chest_xray_mm then 'measurable'
            when axis_mm < recist_ct_mr_caliper_mm then 'not_measurable'
            else 'undecided'
        end as measurement_status
    from classified

)

select
    -- ids
    trial_id,
    patient_mrn,
    observation_id,
    evidence_source,
    evidence_id,

    -- measurement
    value_canonical as size_mm,
    axis_mm,
    value_issue,
    method_code,
    method,
    method_accepted,
    is_nodal,
    minimum_size_mm,
    measurement_status,
    case measurement_status
        when 'measurable' then true
        when 'not_measurable' then false
    end as is_measurable,
    case
        when measurement_status = 'unusable'
            then 'size unusable (' || coalesce(value_issue, 'no value') || ')'
        when method_accepted = false
            then 'not accepted by RECIST 1.1 for measurement'
        when is_nodal and axis_mm is null and measurement_status = 'undecided'
            then 'short axis not recorded'
        when method is null and measurement_status = 'undecided'
            then 'imaging method not recorded'
        when method is null and measurement_status = 'measurable'
            then 'imaging method not recorded, measurable by every method'
        when method is null
            then 'imaging method not recorded, not measurable by any method'
        when measurement_status = 'measurable' then 'measurable'
        else 'below the minimum size'
    end as lesion_note,

    -- timestamps
    effective_at,
    effective_date

from decided
