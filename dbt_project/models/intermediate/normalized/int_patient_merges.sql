-- int_patient_merges: one row per MRN a hospital retired into another (docs/decisions.md
-- "Patient merges and test patients"), from HL7 ADT A40/A34/A18 (MRG-1 -> PID-3) and the CSV
-- extract's patient_merges.csv, with the final surviving MRN: chains (A -> B, B -> C) resolve
-- to C, up to 10 hops. Every staging model maps a record's MRN through this table (macro
-- surviving_mrn), so the retired MRN's records count for the survivor and the retired MRN is
-- no patient of its own. A retired MRN merged twice follows its latest merge; a cycle
-- (A -> B, B -> A) or a longer chain resolves to no survivor and is left unmerged (both MRNs
-- stay patients: a merge is never guessed).

-- On PostgreSQL an index on retired_mrn: every staging row looks its MRN up here (a scalar
-- subquery PostgreSQL runs once per row), a scan of the table per row without it (a not_null
-- test of stg_hl7__observations ran for minutes at 100,000 patients; docs/decisions.md
-- "PostgreSQL looks a merged MRN up by index"). DuckDB turns the lookup into a join.
{{ config(indexes=[{'columns': ['retired_mrn']}] if target.type == 'postgres' else []) }}

{%- set hops = 10 %}

with

merge_records as (

    select * from {{ ref('stg_hl7__patient_merges') }}
    union all
    select * from {{ ref('stg_csv__patient_merges') }}

),

versions as (

    -- the latest delivered version of each merge record
    select *
    from (
        select
            merge_records.*,
            row_number() over (
                partition by merge_records.evidence_source, merge_records.record_id
                order by
                    merge_records.loaded_at desc,
                    merge_records.source_file desc,
                    merge_records.source_position desc
            ) as version_rank
        from merge_records
    ) as ranked
    where version_rank = 1
        and retired_mrn is not null
        and surviving_mrn is not null
        and retired_mrn <> surviving_mrn

),

edges as (

    -- one merge per retired MRN: the latest made (then the latest loaded)
    select *
    from (
        select
            versions.*,
            row_number() over (
                partition by versions.retired_mrn
                order by
                    case when versions.merged_at is null then 1 else 0 end,
                    versions.merged_at desc,
                    versions.loaded_at desc,
                    versions.evidence_source
            ) as edge_rank
        from versions
    ) as ranked
    where edge_rank = 1

),

hop_0 as (

    select
        retired_mrn,
        surviving_mrn as survivor,
        evidence_source,
        record_id as evidence_id,
        event_type,
        merged_at
    from edges

),
{%- for hop in range(1, hops + 1) %}

hop_{{ hop }} as (

    select
        hop_{{ hop - 1 }}.retired_mrn,
        coalesce(next_edge.surviving_mrn, hop_{{ hop - 1 }}.survivor) as survivor,
        hop_{{ hop - 1 }}.evidence_source,
        hop_{{ hop - 1 }}.evidence_id,
        hop_{{ hop - 1 }}.event_type,
        hop_{{ hop - 1 }}.merged_at
    from hop_{{ hop - 1 }}
    left join edges as next_edge
        on hop_{{ hop - 1 }}.survivor = next_edge.retired_mrn

),
{%- endfor %}

resolved as (

    select hop_{{ hops }}.*
    from hop_{{ hops }}
    left join edges as still_retired
        on hop_{{ hops }}.survivor = still_retired.retired_mrn
    where still_retired.retired_mrn is null

)

select
    -- ids
    retired_mrn,
    survivor as surviving_mrn,
    -- the merge record (of the retired MRN's own merge)
    evidence_source,
    evidence_id,
    event_type,
    merged_at
from resolved
