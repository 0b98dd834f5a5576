"""The oracle's own tables for results (spelled out again here, shared with neither the
pipeline nor the generator): the analyte of each LOINC and local code, unit spellings and
their factors to the canonical unit, plausible ranges, plausible and institutional ULNs,
the lower limits, the counting statuses, printed flags, viral load units and "not
detected" spellings, and the LOINC answer codes of ECOG and Karnofsky."""

ANALYTE_OF_LOINC = {
    "751-8": "anc",
    "26499-4": "anc",
    "777-3": "platelets",
    "26515-7": "platelets",
    "718-7": "hemoglobin",
    "1975-2": "bilirubin",
    "42719-5": "bilirubin",
    "1920-8": "ast",
    "1742-6": "alt",
    "2160-0": "creatinine",
    "38483-4": "creatinine",
    "14682-9": "creatinine",
    "1751-7": "albumin",
    "2951-2": "sodium",
    "2947-0": "sodium",
    "29463-7": "weight",
    "8302-2": "height",
    "89247-1": "ecog",
    "89243-0": "karnofsky",
    "20447-9": "viral_load",
    "25836-8": "viral_load",
    "29541-0": "viral_load_log10",
    "21889-1": "tumor_size",
    "97509-4": "disease_status",
}
LOCAL_CODE_TO_LOINC = {
    "HGB": "718-7",
    "PLT": "777-3",
    "ANC": "751-8",
    "CREAT": "2160-0",
    "TBIL": "1975-2",
    "AST": "1920-8",
    "ALT": "1742-6",
    "ALB": "1751-7",
    "NA": "2951-2",
    "HIVVL": "20447-9",
}
_CELLS = {
    "10*3/uL": 1.0,
    "10*9/L": 1.0,
    "K/uL": 1.0,
    "x10E3/uL": 1.0,
    "10^9/L": 1.0,
    "G/L": 1.0,
    "/uL": 0.001,
    "cells/uL": 0.001,
    "{cells}/uL": 0.001,
}
# unit spelling -> factor to the canonical unit (docs/specification.md#canonical-units; factors:
# seed unit_conversions)
UNIT_TO_CANONICAL: dict[str, dict[str, float]] = {
    "anc": _CELLS,
    "platelets": _CELLS,
    "hemoglobin": {"g/dL": 1.0, "g/dl": 1.0, "gm/dl": 1.0, "g/L": 0.1, "mmol/L": 1 / 0.6206},
    "bilirubin": {"mg/dL": 1.0, "mg/dl": 1.0, "umol/L": 1 / 17.1, "µmol/L": 1 / 17.1},
    "ast": {"U/L": 1.0, "IU/L": 1.0, "[IU]/L": 1.0, "u/l": 1.0},
    "alt": {"U/L": 1.0, "IU/L": 1.0, "[IU]/L": 1.0, "u/l": 1.0},
    "creatinine": {"mg/dL": 1.0, "mg/dl": 1.0, "umol/L": 1 / 88.4, "µmol/L": 1 / 88.4},
    "albumin": {"g/dL": 1.0, "g/dl": 1.0, "g/L": 0.1},
    "sodium": {"mmol/L": 1.0, "mEq/L": 1.0, "meq/L": 1.0},
    "weight": {"kg": 1.0, "g": 0.001, "[lb_av]": 0.45359237, "lb": 0.45359237},
    "height": {"cm": 1.0, "m": 100.0, "[in_i]": 2.54, "in": 2.54},
}
PLAUSIBLE: dict[str, tuple[float, float]] = {
    "anc": (0.0, 100.0),
    "platelets": (1.0, 2000.0),  # floor: seed plausibility_ranges (detection limit)
    "hemoglobin": (1.0, 25.0),
    "bilirubin": (0.0, 50.0),
    "ast": (0.0, 10000.0),
    "alt": (0.0, 10000.0),
    "creatinine": (0.1, 30.0),
    "albumin": (0.5, 7.0),
    "sodium": (90.0, 200.0),
    "weight": (2.0, 400.0),
    "height": (40.0, 250.0),
}
PLAUSIBLE_ULN = {
    "bilirubin": (0.5, 2.0),
    "ast": (20.0, 100.0),
    "alt": (20.0, 100.0),
    "creatinine": (0.5, 2.0),
}
INSTITUTIONAL_ULN = {"bilirubin": 1.2, "ast": 40.0, "alt": 40.0, "creatinine": 1.2}
LOWER_LIMITS = {"anc": 1.0, "platelets": 100.0, "hemoglobin": 9.0, "albumin": 2.5, "sodium": 130.0}
COUNTING = {"final", "amended", "corrected"}


# --- values as laboratories send them (issue 10; docs/decisions.md "Lab values as
# laboratories send them"), read here independently of the generator's labels --------------

# other codes of each analyte (seed loinc_analytes: manual counts, moles/volume, method codes)
ANALYTE_OF_LOINC.update(
    {code: "anc" for code in ("753-4",)}
    | {code: "platelets" for code in ("778-1",)}
    | {c: "hemoglobin" for c in ("20509-6", "55782-7", "30313-1", "30350-3", "59260-0", "93846-4")}
    | {code: "bilirubin" for code in ("14631-6", "77137-8")}
    | {code: "ast" for code in ("30239-8", "88112-8")}
    | {code: "alt" for code in ("1743-4", "1744-2", "76625-3", "77144-4")}
    | {code: "creatinine" for code in ("77140-2", "59826-8")}
    | {code: "albumin" for code in ("61151-7", "61152-5", "2862-1")}
)
# unit spellings of seed unit_aliases beyond the ones above (factors: seed unit_conversions;
# 1 ukat/L = 60 U/L)
_THOUSAND_PER_UL = ("K/µL", "K/μL", "K/mcL", "K/cumm", "10^3/mcL", "10^3/µL", "x10³/µL",
                    "x10^3/mcL", "x10E3/µL", "×10^3/µL", "10³/µL", "thou/mcL", "×10⁹/L",
                    "x10⁹/L", "x10^9/L", "×10^9/L", "10⁹/L", "Gpt/L")  # fmt: skip
_PER_UL = ("/mcL", "/µL", "/mm³", "cells/mcL", "cells/µL", "cells/cumm")
for _a in ("anc", "platelets"):
    UNIT_TO_CANONICAL[_a] = {
        **UNIT_TO_CANONICAL[_a],
        **dict.fromkeys(_THOUSAND_PER_UL, 1.0),
        **dict.fromkeys(_PER_UL, 0.001),
    }
for _a, _f in (("bilirubin", 1 / 17.1), ("creatinine", 1 / 88.4)):
    UNIT_TO_CANONICAL[_a] = {**UNIT_TO_CANONICAL[_a], "mcmol/L": _f, "μmol/L": _f}
for _a in ("ast", "alt"):
    UNIT_TO_CANONICAL[_a] = {
        **UNIT_TO_CANONICAL[_a],
        **dict.fromkeys(("ukat/L", "µkat/L", "μkat/L", "mckat/L"), 60.0),
    }
VL_UNITS = {"{copies}/mL": 1.0, "copies/mL": 1.0, "cp/mL": 1.0}
# printed abnormal flags (seed abnormal_flags), matched case-insensitively
FLAGS = {"h", "l", "hh", "ll", "a", "aa", "n", "hu", "lu", "*", "**", "!", "!!", "(h)", "(l)",
         "[h]", "[l]", "(hh)", "(ll)", "(a)", "high", "low", "crit", "critical", "abn",
         "abnormal", "*h", "*l", "h*", "l*"}  # fmt: skip
# "not detected" in the spellings of seed qualitative_results (HIV-1 RNA), lowercased
VL_NOT_DETECTED = {"not detected", "hiv-1 rna not detected", "hiv 1 rna not detected",
                   "undetected", "target not detected", "tnd", "none detected", "nd",
                   "undetectable", "not detectable", "below detection limit",
                   "below the limit of detection"}  # fmt: skip
VL_NOT_DETECTED_CODES = {"260415000", "LA11883-8"}
# LOINC answer codes of ECOG (LL529-9) and Karnofsky (LL4986-7): seed coded_scores
SCORE_ANSWERS = {
    **{("ecog", f"LA962{d}"): n for n, d in enumerate(("2-7", "3-5", "4-3", "5-0", "6-8", "7-6"))},
    **{("karnofsky", f"LA291{k}"): 100 - 10 * i for i, k in enumerate(
        ("75-9", "76-7", "77-5", "78-3", "79-1", "80-9", "81-7", "82-5", "83-3", "84-1"))},
    ("karnofsky", "LA9627-6"): 0,
}  # fmt: skip
