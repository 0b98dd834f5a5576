"""Reference tables the generator draws from: analytes, unit spellings, codes, names.

Kept apart from the scenario logic so a reader can check the clinical numbers in one place.
Unit entries are ``(spelling, multiplier)``: the written value is the canonical value times
the multiplier (factors: seed unit_conversions). The oracle has its own inverse table on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Analyte:
    name: str
    loincs: tuple[tuple[str, str], ...]  # (code, display); first is preferred
    normal: tuple[float, float]  # canonical range a healthy value is drawn from
    bad: tuple[float, float]  # canonical range that fails the criterion
    decimals: int
    units: tuple[tuple[str, float, int], ...]  # (spelling, multiplier, decimals)
    ref: tuple[float, float] | None  # canonical reference range printed with results
    local: str | None  # HL7 / CSV local code
    low_is_bad: bool  # True when the criterion is a lower limit


CELL_UNITS = (
    ("10*3/uL", 1.0, -1),
    ("10*9/L", 1.0, -1),
    ("K/uL", 1.0, -1),
    ("x10E3/uL", 1.0, -1),
    ("10^9/L", 1.0, -1),
    ("G/L", 1.0, -1),
    ("/uL", 1000.0, 0),
    ("cells/uL", 1000.0, 0),
    ("{cells}/uL", 1000.0, 0),
)

ANALYTES: dict[str, Analyte] = {
    "anc": Analyte(
        "anc",
        (
            ("751-8", "Neutrophils [#/volume] in Blood by Automated count"),
            ("26499-4", "Neutrophils [#/volume] in Blood"),
        ),
        (1.8, 6.5),
        (0.2, 0.8),
        1,
        CELL_UNITS,
        (1.8, 7.7),
        "ANC",
        True,
    ),
    "platelets": Analyte(
        "platelets",
        (
            ("777-3", "Platelets [#/volume] in Blood by Automated count"),
            ("26515-7", "Platelets [#/volume] in Blood"),
        ),
        (160, 390),
        (30, 85),
        0,
        CELL_UNITS,
        (150, 400),
        "PLT",
        True,
    ),
    "hemoglobin": Analyte(
        "hemoglobin",
        (("718-7", "Hemoglobin [Mass/volume] in Blood"),),
        (11.0, 15.5),
        (6.5, 8.4),
        1,
        (
            ("g/dL", 1.0, -1),
            ("g/dl", 1.0, -1),
            ("gm/dl", 1.0, -1),
            ("g/L", 10.0, 0),
            ("mmol/L", 0.6206, 2),
        ),
        (12.0, 16.0),
        "HGB",
        True,
    ),
    "bilirubin": Analyte(
        "bilirubin",
        (
            ("1975-2", "Bilirubin.total [Mass/volume] in Serum or Plasma"),
            ("42719-5", "Bilirubin.total [Mass/volume] in Blood"),
        ),
        (0.3, 1.0),
        (2.4, 4.0),
        1,
        (("mg/dL", 1.0, -1), ("mg/dl", 1.0, -1), ("umol/L", 17.1, 0)),
        (0.1, 1.2),
        "TBIL",
        False,
    ),
    "ast": Analyte(
        "ast",
        (("1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma"),),
        (14, 34),
        (230, 320),
        0,
        (("U/L", 1.0, -1), ("IU/L", 1.0, -1), ("[IU]/L", 1.0, -1), ("u/l", 1.0, -1)),
        (10, 40),
        "AST",
        False,
    ),
    "alt": Analyte(
        "alt",
        (("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma"),),
        (9, 33),
        (230, 320),
        0,
        (("U/L", 1.0, -1), ("IU/L", 1.0, -1), ("[IU]/L", 1.0, -1)),
        (7, 40),
        "ALT",
        False,
    ),
    "creatinine": Analyte(
        "creatinine",
        (
            ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma"),
            ("38483-4", "Creatinine [Mass/volume] in Blood"),
            ("14682-9", "Creatinine [Moles/volume] in Serum or Plasma"),
        ),
        (0.6, 1.1),
        (2.1, 2.6),
        2,
        (("mg/dL", 1.0, -1), ("mg/dl", 1.0, -1), ("umol/L", 88.4, 0), ("µmol/L", 88.4, 0)),
        (0.6, 1.2),
        "CREAT",
        False,
    ),
    "albumin": Analyte(
        "albumin",
        (("1751-7", "Albumin [Mass/volume] in Serum or Plasma"),),
        (3.5, 4.8),
        (1.7, 2.3),
        1,
        (("g/dL", 1.0, -1), ("g/dl", 1.0, -1), ("g/L", 10.0, 0)),
        (3.5, 5.0),
        "ALB",
        True,
    ),
    "sodium": Analyte(
        "sodium",
        (
            ("2951-2", "Sodium [Moles/volume] in Serum or Plasma"),
            ("2947-0", "Sodium [Moles/volume] in Blood"),
        ),
        (135, 144),
        (118, 127),
        0,
        (("mmol/L", 1.0, -1), ("mEq/L", 1.0, -1), ("meq/L", 1.0, -1)),
        (135, 145),
        "NA",
        True,
    ),
}

CBC = ("anc", "platelets", "hemoglobin")
CMP = ("bilirubin", "ast", "alt", "creatinine", "albumin", "sodium")

# A unit no seed maps for that analyte (-> unknown), per analyte.
UNMAPPABLE_UNIT = {
    "anc": "%",
    "platelets": "%",
    "hemoglobin": "g/mL",
    "bilirubin": "mg/24h",
    "ast": "ng/mL",
    "alt": "ng/mL",
    "creatinine": "mg/24h",
    "albumin": "mg/24h",
    "sodium": "mg/dL",
}
# A converted value far outside any plausibility range (-> unknown), canonical unit spelled.
IMPLAUSIBLE = {
    "anc": ("3000", "10*3/uL"),
    "platelets": ("210000", "10*3/uL"),
    "hemoglobin": ("125", "g/dL"),
    "bilirubin": ("95", "mg/dL"),
    "ast": ("-5", "U/L"),
    "alt": ("-3", "U/L"),
    "creatinine": ("88", "mg/dL"),
    "albumin": ("38", "g/dL"),
    "sodium": ("14", "mmol/L"),
}
BOUNDARY = {
    "anc": "1.0",
    "platelets": "100",
    "hemoglobin": "9.0",
    "albumin": "2.5",
    "sodium": "130",
}

WEIGHT = ("29463-7", "Body weight")
HEIGHT = ("8302-2", "Body height")
ECOG = ("89247-1", "ECOG Performance Status score")
KPS = ("89243-0", "Karnofsky Performance Status score")
TUMOR = ("21889-1", "Size Tumor")
DISEASE_STATUS = ("97509-4", "Cancer disease status")
VL = ("20447-9", "HIV 1 RNA [#/volume] (viral load) in Serum or Plasma by NAA with probe detection")
VL_ALT = ("25836-8", "HIV 1 RNA [#/volume] (viral load) in Specimen by NAA with probe detection")
VL_LOG = (
    "29541-0",
    "HIV 1 RNA [Log #/volume] (viral load) in Serum or Plasma by NAA with probe detection",
)

NOT_DETECTED = ("260415000", "Not detected")
WORSENED = ("271299001", "Patient's condition worsened")
LYMPH_NODE = ("59441001", "Structure of lymph node")
# lymph node body sites other than 59441001 (seed lymph_node_sites, DICOM CID 7600)
LYMPH_NODE_SITES = (
    ("68171009", "Axillary lymph node structure"),
    ("8928004", "Inguinal lymph node structure"),
    ("62683002", "Mediastinal lymph node structure"),
)
LYMPH_NODE_CODES = frozenset(["59441001", *[c for c, _ in LYMPH_NODE_SITES]])
# a nodal body site sent as text only (no code)
LYMPH_NODE_TEXTS = ("Right axillary lymph node", "Lymph node, left inguinal")
# SNOMED CT methods of mCODE TumorSizeMethodVS (seed imaging_methods)
SNOMED_METHODS = {"CT": "77477000", "MR": "113091000", "CR": "399208008", "US": "16310003"}
BODY_SITES = (
    ("39607008", "Lung structure"),
    ("10200004", "Liver structure"),
    ("68367000", "Thigh structure"),
    ("818981001", "Abdomen structure"),
)

STS_ICD10 = (
    ("C49.0", "Malignant neoplasm of connective and soft tissue of head, face and neck"),
    ("C49.1", "Malignant neoplasm of connective and soft tissue of upper limb, including shoulder"),
    ("C49.2", "Malignant neoplasm of connective and soft tissue of lower limb, including hip"),
    ("C49.3", "Malignant neoplasm of connective and soft tissue of thorax"),
    ("C49.4", "Malignant neoplasm of connective and soft tissue of abdomen"),
    ("C49.9", "Malignant neoplasm of connective and soft tissue, unspecified"),
    ("C48.0", "Malignant neoplasm of retroperitoneum"),
    ("C48.2", "Malignant neoplasm of peritoneum, unspecified"),
)
STS_MORPHOLOGY = (
    ("8890/3", "Leiomyosarcoma, NOS"),
    ("8850/3", "Liposarcoma, NOS"),
    ("9040/3", "Synovial sarcoma, NOS"),
    ("8830/3", "Malignant fibrous histiocytoma"),
)
ASPS_MORPHOLOGY = ("9581/3", "Alveolar soft part sarcoma")
ASPS_TEXTS = (
    "Alveolar soft part sarcoma of left thigh",
    "ALVEOLAR SOFT PART SARCOMA, metastatic",
    "alveolar soft part sarcoma (ASPS), right gluteal region",
)
OTHER_CANCERS = (
    ("C50.911", "Malignant neoplasm of unspecified site of right female breast"),
    ("C34.90", "Malignant neoplasm of unspecified part of unspecified bronchus or lung"),
    ("C18.9", "Malignant neoplasm of colon, unspecified"),
    ("C61", "Malignant neoplasm of prostate"),
)
METASTASES = (
    ("C78.0", "Secondary malignant neoplasm of unspecified lung"),
    ("C78.7", "Secondary malignant neoplasm of liver and intrahepatic bile duct"),
    ("C79.51", "Secondary malignant neoplasm of bone"),
    ("C77.2", "Secondary and unspecified malignant neoplasm of intra-abdominal lymph nodes"),
)
NOISE_CONDITIONS = (
    ("I10", "Essential (primary) hypertension"),
    ("E11.9", "Type 2 diabetes mellitus without complications"),
    ("J45.909", "Unspecified asthma, uncomplicated"),
)

# (system, code, name) - ICI recognised by RxNorm ingredient, ATC or brand/generic text.
ICI_DRUGS = (
    ("rxnorm", "1547545", "pembrolizumab"),
    ("rxnorm", "1597876", "nivolumab"),
    ("rxnorm", "1792776", "atezolizumab"),
    ("atc", "L01FF02", "pembrolizumab"),
    ("atc", "L01XC17", "nivolumab"),
    ("text", None, "Keytruda 200 mg IV q3w"),
    ("text", None, "OPDIVO (nivolumab) infusion"),
)
# Antiretrovirals: identified by ATC J05A* (docs/clinical-rules.md#hiv).
ART_DRUGS = (
    ("J05AR20", "bictegravir / emtricitabine / tenofovir alafenamide"),
    ("J05AJ03", "dolutegravir"),
    ("J05AR13", "abacavir / dolutegravir / lamivudine"),
)
NOISE_MEDS = (
    ("rxnorm", "6809", "metformin"),
    ("rxnorm", "29046", "lisinopril"),
    ("atc", "C10AA05", "atorvastatin"),
)

# Issue 11 shapes, codes from the seeds only. RxNorm product codes (seed rxnorm_products:
# SBD Keytruda, SCDs) with the old exact ATC code of the same drug (seed medication_codes).
ICI_PRODUCTS = (
    ("1876356", "L01XC18"),  # pembrolizumab 25 MG/ML Injectable Solution [Keytruda] (SBD)
    ("1946832", "L01XC18"),  # pembrolizumab 25 MG/ML Injectable Solution (SCD)
    ("1946840", "L01XC17"),  # nivolumab 10 MG/ML Injectable Solution (SCD)
    ("1719773", "L01XC32"),  # atezolizumab 60 MG/ML Injectable Solution (SCD)
)
ICI_INGREDIENTS = ("1547545", "1597876", "1792776")  # seed medication_codes (RxNorm)
BEVACIZUMAB = ("atc", "L01XC07", "bevacizumab")  # seed medication_codes: L01XC is no ICI prefix
ICI_ATC = ("L01FF02", "pembrolizumab")
# ICD-O-3 morphology as feeds spell it (seed macro normalize_icdo3) and the /6 behaviour
ICDO3_SPELLINGS = ("{m}/{b}", "{m}{b}", "M{m}/{b}", "M-{m}{b}")
ASPS_METASTATIC = ("9581/6", "Alveolar soft part sarcoma, metastatic")
ICD10_OID = "urn:oid:2.16.840.1.113883.6.90"  # seed code_system_aliases
HIV_DX = (
    ("B20", "Human immunodeficiency virus [HIV] disease"),
    ("Z21", "Asymptomatic human immunodeficiency virus [HIV] infection status"),
)
LIVER_METASTASIS = METASTASES[1]

FAMILY_NAMES = (
    "Smith",
    "Garcia",
    "Nguyen",
    "Okafor",
    "Kowalski",
    "Haddad",
    "Jensen",
    "Rossi",
    "Tanaka",
    "O'Brien",
    "Müller",
    "Silva",
    "Dubois",
    "Novak",
)
GIVEN_MALE = ("James", "Luis", "Minh", "Chidi", "Piotr", "Omar", "Lars", "Marco")
GIVEN_FEMALE = ("Mary", "Ana", "Linh", "Ngozi", "Zofia", "Layla", "Ingrid", "Giulia")
GIVEN_OTHER = ("Alex", "Sam", "Robin", "Kim")
