-- Every coding of every medication record (docs/decisions.md "Every coding is kept"), one row
-- per (medication, code_system, code): the record's own code, the other codings of its
-- medicationCodeableConcept or contained Medication (raw.<feed>_codings), the codings of the
-- Medication resource a medicationReference names (same bundle or a Medication NDJSON file),
-- and for an RxNorm product-level code (SCD/SBD/GPCK/BPCK, seed rxnorm_products) its
-- ingredient, flagged `via_product`.
with

medications as (

    select * from {{ ref('int_medications') }}

),

-- Each use of the three feeds' codings is its own filtered union (macro union_feed_codings),
-- and a reference resolves by one equality (resolved_references). At 100,000 patients
-- PostgreSQL joined every medication to every Medication resource of the feed, 177 M rows
-- hashed to temporary files until the disk was full (docs/decisions.md "A
-- medicationReference is resolved by key").
medication_codings as (

    {{ union_feed_codings("entity = 'medications' and element = 'medication' and code is not null") }}

),

reference_codings as (

    {{ union_feed_codings("entity = 'medications' and element = 'reference'") }}

),

resource_codings as (

    {{ union_feed_codings("entity = 'medication_resources'") }}

),

products as (

    select * from {{ ref('rxnorm_products') }}

),

own as (

    select
        medication_id,
        code_system,
        code,
        code_display
    from medications
    -- a text-only record keeps one row (null code): names still match

),

children as (

    select
        medications.medication_id,
        medication_codings.code_system,
        medication_codings.code,
        medication_codings.code_display
    from medications
    inner join medication_codings
        on medications.evidence_source = medication_codings.evidence_source
        and medications.evidence_id = medication_codings.record_id
        and medications.record_hash = medication_codings.record_hash

),

-- the Medication resources' codings, each resource's latest delivered version ranked 1; a
-- resource's record id is "Medication/<id>" (the FHIR reader's key)
resource_versions as (

    select
        *,
        dense_rank() over (
            partition by evidence_source, record_id
            order by loaded_at desc, source_file desc, record_hash desc
        ) as version_rank
    from resource_codings

),

-- a medicationReference names its resource relatively ("Medication/<id>") or absolutely
-- (".../Medication/<id>"): its last two path segments are the resource's record id, so the
-- reference resolves by an equality, never by a LIKE over every pair
reference_targets as (

    select
        evidence_source,
        record_id,
        record_hash,
        {{ regex_group('code_raw', '([^/]+/[^/]+)$', 1) }} as resource_id
    from reference_codings

),

resolved_references as (

    select
        reference_targets.evidence_source,
        reference_targets.record_id,
        reference_targets.record_hash,
        resource_versions.code_system,
        resource_versions.code,
        resource_versions.code_display
    from reference_targets
    -- one key (feed and id together): with the feed as a join column of its own, PostgreSQL
    -- may join every medication to every resource of its feed first (the equality passes
    -- from medications through the references to the resources)
    inner join resource_versions
        on reference_targets.evidence_source || ' ' || reference_targets.resource_id
        = resource_versions.evidence_source || ' ' || resource_versions.record_id
    where resource_versions.version_rank = 1

),

referenced as (

    -- medicationReference -> the Medication resource's codings (latest delivered version)
    select
        medications.medication_id,
        resolved_references.code_system,
        resolved_references.code,
        resolved_references.code_display
    from medications
    inner join resolved_references
        on medications.evidence_source = resolved_references.evidence_source
        and medications.evidence_id = resolved_references.record_id
        and medications.record_hash = resolved_references.record_hash

),

unioned as (

    select * from own
    union all
    select * from children
    union all
    select * from referenced

),

distinct_codings as (

    select
        medication_id,
        code_system,
        code,
        max(code_display) as code_display
    from unioned
    group by medication_id, code_system, code

)

select
    medication_id,
    code_system,
    code,
    code_display,
    false as via_product
from distinct_codings
union all
-- an RxNorm product-level code stands for its ingredient (seed rxnorm_products)
select
    distinct_codings.medication_id,
    'rxnorm' as code_system,
    cast(products.ingredient_rxcui as {{ dbt.type_string() }}) as code,
    products.ingredient as code_display,
    true as via_product
from distinct_codings
inner join products
    on distinct_codings.code_system = 'rxnorm'
    and distinct_codings.code = cast(products.rxcui as {{ dbt.type_string() }})
