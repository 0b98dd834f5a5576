-- Data quality: observation codes that map to no analyte (docs/decisions.md "Lab values as
-- laboratories send them"), counted per feed and code, so a code the seeds do not know is seen
-- instead of dropped silently. An observation is mapped when its LOINC is in seed loinc_analytes
-- or its local code is in seed local_lab_codes for its facility or any facility (an unknown
-- LOINC beside a mapped local code is mapped); codes on seed ignored_observation_codes are left out. Codes only: no display text,
-- no patient.
with

observations as (

    select
        evidence_source,
        loinc,
        local_code,
        facility
    from {{ ref('stg_fhir__observations') }}
    union all
    select
        evidence_source,
        loinc,
        local_code,
        facility
    from {{ ref('stg_hl7__observations') }}
    union all
    select
        evidence_source,
        loinc,
        local_code,
        facility
    from {{ ref('stg_csv__observations') }}

),

loinc_analytes as (

    select * from {{ ref('loinc_analytes') }}

),

local_lab_codes as (

    select * from {{ ref('local_lab_codes') }}

),

ignored as (

    select * from {{ ref('ignored_observation_codes') }}

),

resolved as (

    select
        observations.evidence_source,
        case when observations.loinc is not null then 'loinc' else 'local' end as code_system,
        coalesce(observations.loinc, observations.local_code) as code,
        coalesce(by_loinc.analyte, by_local_loinc.analyte, {{ local_lab_code('analyte') }})
            as analyte
    from observations
    left join loinc_analytes as by_loinc
        on observations.loinc = by_loinc.loinc
    {{ join_local_lab_codes('observations.local_code', 'observations.facility') }}
    left join loinc_analytes as by_local_loinc
        on {{ local_lab_code('loinc') }} = by_local_loinc.loinc

),

unmapped as (

    select resolved.*
    from resolved
    left join ignored
        on resolved.code_system = ignored.code_system
        and upper(resolved.code) = upper(ignored.code)
    where resolved.analyte is null
        and resolved.code is not null
        and ignored.code is null

)

select
    {{ run_id() }} as run_id,
    evidence_source as feed,
    code_system,
    code,
    count(*) as observation_count
from unmapped
group by evidence_source, code_system, code
