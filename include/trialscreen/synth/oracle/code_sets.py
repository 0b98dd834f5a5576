"""The oracle's own code sets for conditions and medications: sarcoma morphologies, the
immune checkpoint inhibitors (RxNorm ingredients and products, ATC, names), lifelong
concepts, HIV and metastasis SNOMED concepts, system URIs/OIDs and the medication statuses
and intents that are not therapy given."""

SARCOMA_MORPHOLOGY = {
    "8800/3",
    "8801/3",
    "8802/3",
    "8803/3",
    "8804/3",
    "8805/3",
    "8810/3",
    "8830/3",
    "8850/3",
    "8851/3",
    "8852/3",
    "8854/3",
    "8858/3",
    "8890/3",
    "8891/3",
    "8894/3",
    "8900/3",
    "8901/3",
    "8910/3",
    "8912/3",
    "8920/3",
    "9040/3",
    "9041/3",
    "9043/3",
    "9120/3",
    "9260/3",
    "9364/3",
    "9581/3",
}
ICI_RXNORM = {"1547545", "1597876", "1792776"}
ICI_NAMES = (
    "pembrolizumab",
    "nivolumab",
    "atezolizumab",
    "durvalumab",
    "avelumab",
    "cemiplimab",
    "dostarlimab",
    "ipilimumab",
    "relatlimab",
    "tislelizumab",
    "toripalimab",
    "retifanlimab",
    "opdivo",
    "keytruda",
    "imfinzi",
    "bavencio",
    "tecentriq",
    "libtayo",
    "jemperli",
    "yervoy",
    "opdualag",
    "tevimbra",
    "loqtorzi",
    "zynyz",
)
NOT_PRIOR_THERAPY = {"cancelled", "draft", "entered-in-error", "not-done", "not-taken"}
# pre-2022 ATC codes of the ICIs, exactly (L01XC also holds bevacizumab L01XC07, olaratumab)
ICI_ATC_OLD = {"L01XC11", "L01XC17", "L01XC18", "L01XC28", "L01XC31", "L01XC32"}
# concepts the trial treats as lifelong (seed condition_concepts): HIV, Gilbert syndrome
LIFELONG_ICD = ("B20", "Z21", "E804")
# issue 11: RxNorm product codes of the ICIs (SBD/SCD -> ingredient), SNOMED concepts, the
# system URIs/OIDs a source sends instead of the short name, request intents that give nothing
ICI_RXNORM_PRODUCTS = {"1876356", "1946832", "1946840", "1719773"}
HIV_SNOMED = {"86406008", "165816005"}
METASTASIS_SNOMED = {"128462008", "94381002"}
LIVER_METASTASIS_SNOMED = {"94381002"}
SYSTEM_ALIASES = {
    "urn:oid:2.16.840.1.113883.6.90": "icd-10-cm",
    "http://hl7.org/fhir/sid/icd-10-cm": "icd-10-cm",
    "http://hl7.org/fhir/sid/icd-10": "icd-10-cm",
    "urn:oid:2.16.840.1.113883.6.43.1": "icd-o-3",
    "http://terminology.hl7.org/CodeSystem/icd-o-3": "icd-o-3",
}
NOT_GIVEN_INTENTS = {"proposal", "plan"}
