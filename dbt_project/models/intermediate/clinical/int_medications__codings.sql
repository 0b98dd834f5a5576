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

child_codings as (

    select * from {{ ref('stg_fhir__codings') }}
    union all
    select * from {{ ref('stg_hl7__codings') }}
    union all
    select * from {{ ref('stg_csv__codings') }}

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
        child.code_system,
        child.code,
        child.code_display
    from medications
    inner join child_codings as child
        on medications.evidence_source = child.evidence_source
        and medications.evidence_id = child.record_id
        and medications.record_hash = child.record_hash
    where child.entity = 'medications'
        and child.element = 'medication'
        and child.code is not null

),

-- the Medication resources' codings, each resource's latest delivered version ranked 1
resource_versions as (

    select
        *,
        dense_rank() over (
            partition by evidence_source, record_id
            order by loaded_at desc, source_file desc, record_hash desc
        ) as version_rank
    from child_codings
    where entity = 'medication_resources'

),

referenced as (

    -- medicationReference -> the Medication resource's codings (latest delivered version)
    select
        medications.medication_id,
        resource_codings.code_system,
        resource_codings.code,
        resource_codings.code_display
    from medications
    inner join child_codings as reference_codings
        on medications.evidence_source = reference_codings.evidence_source
        and medications.evidence_id = reference_codings.record_id
        and medications.record_hash = reference_codings.record_hash
    inner join resource_versions as resource_codings
        on reference_codings.evidence_source = resource_codings.evidence_source
        and (
            reference_codings.code_raw = resource_codings.record_id
            or reference_codings.code_raw like '%/' || resource_codings.record_id
        )
        and resource_codings.version_rank = 1
    where reference_codings.entity = 'medications'
        and reference_codings.element = 'reference'

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
