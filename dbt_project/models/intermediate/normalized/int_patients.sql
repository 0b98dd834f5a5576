-- int_patients: one row per MRN across the three feeds (an MRN retired by a merge is already
-- under its surviving MRN), with its pseudonymous key. Demographics are merged field by field
-- (docs/decisions.md "Demographics merged field by field"): each feed's latest known value
-- (int_patients__by_source: a later blank never erases, a later value from the same feed
-- corrects it); feeds that agree give the value; feeds that send different birth dates (or
-- sexes) give none - birth date null, sex unknown - and the conflict is named
-- (birth_date_sources, sex_sources) so the age criterion says which feeds to reconcile.
-- Never resolved silently: a new birth date from another feed cannot change an age.
-- Names: the latest known across feeds (ties FHIR, CSV, HL7). Death: the earliest recorded by
-- any feed (a patient some system records as dead is not approached).

with

by_source as (

    select
        by_source.*,
        case by_source.evidence_source when 'fhir' then 1 when 'csv' then 2 else 3 end as feed_rank
    from {{ ref('int_patients__by_source') }} as by_source

),

patient_keys as (

    select * from {{ source('restricted', 'patient_keys') }}

),

agreement as (

    select
        patient_mrn,
        count(distinct birth_date) as birth_date_values,
        max(birth_date) as agreed_birth_date,
        count(distinct sex) as sex_values,
        max(sex) as agreed_sex,
        min(deceased_at) as deceased_at,
        {%- for feed in ['fhir', 'hl7', 'csv'] %}
        max(case when evidence_source = '{{ feed }}' and birth_date is not null then 1 else 0 end)
            as birth_date_{{ feed }},
        max(case when evidence_source = '{{ feed }}' and sex is not null then 1 else 0 end)
            as sex_{{ feed }},
        {%- endfor %}
        max(latest_loaded_at) as latest_loaded_at
    from by_source
    group by patient_mrn

),

birth as (

    -- the feed the birth date is taken from: the latest to send it (ties FHIR, CSV, HL7);
    -- without any birth date, the latest record
    select *
    from (
        select
            by_source.*,
            row_number() over (
                partition by by_source.patient_mrn
                order by
                    case when by_source.birth_date is null then 1 else 0 end,
                    coalesce(by_source.birth_date_loaded_at, by_source.latest_loaded_at) desc,
                    by_source.feed_rank
            ) as birth_rank
        from by_source
    ) as ranked
    where birth_rank = 1

),

names as (

    select *
    from (
        select
            by_source.*,
            row_number() over (
                partition by by_source.patient_mrn
                order by
                    case when by_source.family_name is null and by_source.given_name is null then 1 else 0 end,
                    by_source.name_loaded_at desc,
                    by_source.feed_rank
            ) as name_rank
        from by_source
    ) as ranked
    where name_rank = 1

),

final as (

    select
        -- ids
        agreement.patient_mrn,
        patient_keys.patient_key,
        -- demographics
        case when agreement.birth_date_values = 1 then agreement.agreed_birth_date end
            as birth_date,
        case when agreement.sex_values = 1 then agreement.agreed_sex else 'unknown' end as sex,
        names.family_name,
        names.given_name,
        agreement.deceased_at,
        -- conflicts between feeds (values never shown: which feeds, how many values)
        agreement.birth_date_values > 1 as birth_date_conflict,
        agreement.birth_date_values,
        {{ feed_list('agreement.birth_date_fhir', 'agreement.birth_date_hl7', 'agreement.birth_date_csv') }}
            as birth_date_sources,
        agreement.sex_values > 1 as sex_conflict,
        agreement.sex_values,
        {{ feed_list('agreement.sex_fhir', 'agreement.sex_hl7', 'agreement.sex_csv') }}
            as sex_sources,
        -- evidence: the record the birth date came from
        birth.evidence_source,
        coalesce(birth.birth_date_record_id, birth.latest_record_id) as evidence_id,
        birth.latest_source_file as source_file,
        coalesce(birth.birth_date_loaded_at, birth.latest_loaded_at) as loaded_at
    from agreement
    inner join birth
        on agreement.patient_mrn = birth.patient_mrn
    inner join names
        on agreement.patient_mrn = names.patient_mrn
    left join patient_keys
        on agreement.patient_mrn = patient_keys.mrn

)

select * from final
