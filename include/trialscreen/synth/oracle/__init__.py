"""The expected outcome: docs/clinical-rules.md written out as plainly as possible, patient by
patient.

This is the known answer the dbt pipeline is compared against, so it deliberately shares no
code with the pipeline (or with the generator's tables): units, codes and plausibility
ranges are spelled out again here. Records flagged ``bad`` (quarantined by the feeds) are
skipped, as if absent.

Interpretation choices (each one also commented where it is applied):

1. Windows are inclusive on local calendar dates in the hospital time zone
   (``TRIALSCREEN_TIMEZONE``, default UTC): S-28 <= local date(effective) <= S. A result at
   22:30 local time on S counts; anything dated after S is ignored.
2. Counting statuses: final, amended, corrected. preliminary/registered are ignored,
   cancelled/entered-in-error excluded. A correction shares the order, the observation time
   and is issued later, so "latest, ties by later issued" and "C supersedes F" agree.
3. Latest per analyte = max by (effective time, issued time, worse value); "worse" is the
   lower value for lower-limit criteria and the higher for ×ULN ones. In a tie a usable result
   comes before an unusable one (docs/clinical-rules.md), then the worse value.
4. The latest result decides even when it is unusable (unmappable unit, implausible value):
   the criterion is then unknown, never an older value (docs/clinical-rules.md#unusable-results).
5. Comparator results decide only when every value they allow falls on one side.
   values.csv reports the comparator's bound as the value (``<0.5`` -> 0.5).
6. ULN = the result's own reference high (converted with the result's unit) when it lies in
   the plausible-ULN range below, else the institutional ULN (bilirubin 1.2 mg/dL,
   AST 40 U/L, ALT 40 U/L, creatinine 1.2 mg/dL). ×ULN = value / ULN.
7. Renal: met when creatinine <= 1.5×ULN; otherwise Cockcroft-Gault normalized
   (actual weight, Mosteller BSA) >= 30 -> met, < 30 -> not_met; unknown when weight, height
   or a usable creatinine is missing. A creatinine with a comparator that does not decide by
   itself is unknown (no CG from a bound). CrCl values are reported whenever computable,
   except for sex other/unknown (two values; the criterion decides only when male and
   female formulas agree) and for comparator creatinine.
8. Weight: latest in 90 days. Height: adults (>= 18 at S) the latest measured at age >= 18
   on any date <= S; minors the latest within 365 days.
9. Performance: the latest assessment *date* in the 28-day window; on that date the latest
   ECOG and the latest Karnofsky/Lansky are judged on their own scale (ECOG <= 2, KPS >= 70);
   both present and disagreeing -> review. values.csv ``ecog`` / ``karnofsky`` = the scores
   the decision used (the latest of each scale on that latest date), so a displayed value
   never contradicts the status beside it.
10. Measurable disease: any counting measurement in 28 days measurable -> met; every one
    decided not measurable -> not_met; otherwise (or none in the window) -> unknown. Methods:
    CT/MR (DICOM or SNOMED 77477000/113091000) and caliper/physical exam (text, 5880005)
    10 mm, chest x-ray (CR/DX, 399208008) 20 mm; ultrasound/PET (US/PT, 16310003/82918005)
    never decide; no method: >= 20 mm measurable, < 10 mm not, between undecided. Nodal
    (a lymph node SNOMED site or "lymph node" in the site text): short axis (else the value,
    unless it is an mCODE longest-dimension component) >= 15 mm, whatever the method; a
    component longest dimension without short axis decides only when < 15 mm.
11. Diagnosis: codes only for STS (ICD-10-CM C48*/C49*, ICD-O-3 sarcoma morphologies below);
    ASPS = ICD-O-3 9581/3 or the text in code.text / any coding display. ICD-O-3 in any
    spelling (95813, M9581/3, M-95813); behaviour /6 is the listed /3 morphology, metastatic.
    Advanced = a counting C77-C79, SNOMED secondary neoplasm or ICD-O-3 /6 condition (no
    stage codes are generated). ICD-10 under its OID is ICD-10-CM. A condition counts when
    verification is not refuted / entered-in-error, onset <= S, and - unless it is HIV or
    Gilbert (lifelong) - its clinical status is absent/active/recurrence/relapse and it was
    not abated on or before S. ASPS coded only by site (C48/C49, no ICD-O-3 anywhere) -> review.
12. HIV: HIV = counting B20/Z21 or any detectable viral load on/before S (any date). Then the
    latest viral load in 28 days decides: none or undeterminable (``<N``, N > 50) -> unknown;
    detectable -> not_met; undetectable -> met with an active ART (ATC J05A*), else review.
    Active ART: status active, or a statement whose period has no end / ends on or after S
    (not cancelled/entered-in-error/draft/not-taken/on-hold), started on or before S, and not
    a proposal/plan request. Undetectable without active ART -> review (issue 11).
13. ICI: prior ICI = a medication record (any status but cancelled/draft/entered-in-error/
    not-done/not-taken, on-hold included; no proposal/plan request) started on/before S, by
    any of its codings (also behind a medicationReference): RxNorm ingredient or SBD/SCD
    product, ATC L01FF*/L01FX04/L01FY02 and the exact pre-2022 L01XC codes, or name/brand text.
    Progression = counting 97509-4 = SNOMED 271299001 after the first ICI start and on/before
    S (progression conditions are not generated, so not looked for).
14. Age: whole years at S from the birth date (a birthday on S counts).

The package, by what each module holds:

* ``outcome``: the trial's criteria per cohort, the value columns, the ``Outcome`` and
  ``Coordination`` of one patient and ``candidate_status``;
* ``lab_tables``: analyte codes, unit spellings and factors, plausible ranges, ULNs, lower
  limits, printed flags, viral load and score answer spellings;
* ``code_sets``: the diagnosis, metastasis, HIV and immune checkpoint inhibitor codes;
* ``readings``: one result read (text, unit, comparator), the latest result in a window,
  limits with comparators, the ULN, the viral load's class;
* ``conditions`` and ``medications``: which conditions count, their codes in any spelling,
  which medication records are an ICI or therapy given;
* ``lesions``: one tumor measurement under RECIST 1.1, and the lesion the marts report;
* ``evaluator``: the criteria, one method per criterion family, and ``evaluate``.
"""

from trialscreen.synth.oracle.evaluator import evaluate
from trialscreen.synth.oracle.lab_tables import INSTITUTIONAL_ULN
from trialscreen.synth.oracle.outcome import (
    CRITERIA,
    TRIAL_ID,
    VALUE_COLUMNS,
    Coordination,
    Outcome,
    candidate_status,
)
from trialscreen.synth.oracle.readings import Reading

__all__ = [
    "CRITERIA",
    "INSTITUTIONAL_ULN",
    "TRIAL_ID",
    "VALUE_COLUMNS",
    "Coordination",
    "Outcome",
    "Reading",
    "candidate_status",
    "evaluate",
]
