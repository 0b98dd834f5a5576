"""Scenarios -> patient records, one patient at a time, deterministically.

Every patient gets its own ``random.Random`` seeded from ``(seed, index)``, so a patient's
record never depends on how many patients came before it or on chunking; the whole
population is reproducible byte for byte per (seed, screening_date).

Each patient draws one variant per *dimension* (diagnosis, each lab, renal, performance,
tumor, HIV, prior ICI, extras). About 45 % of patients are "clean" (every dimension takes
its normal variant) so that ``ready_for_review`` candidates exist; the rest draw variants
with the weights below. The variant labels are kept in ``PatientRecord.scenario`` for
debugging only: the oracle never reads them, it decides from the records themselves.

The package, by what each module holds:

* ``builder``: ``_Builder``, one patient's random stream and the records it draws (ids,
  times, observations, conditions, medications), and the weighted pick;
* ``patient``: ``build_patient``, the whole record dimension by dimension: demographics,
  the identity shapes (test patients, merged MRNs) and the deliberately bad records;
* ``conditions``: the diagnosis, metastases and the other conditions (pregnancy, dysphagia,
  gastrostomy, Gilbert), noise medications;
* ``labs``: the lab variants and the blood count and chemistry panels;
* ``assessments``: weight and height, performance status, tumor measurements;
* ``hiv_and_ici``: HIV (diagnosis, ART, viral loads) and prior immune checkpoint inhibitors;
* ``ehr_shapes``: conditions and medications as real EHRs record them (issue 11).
"""

from trialscreen.synth.population.ehr_shapes import ISSUE11_SHAPES, SHAPE_SHARE
from trialscreen.synth.population.labs import COMPARATORS, LAB_VARIANTS
from trialscreen.synth.population.patient import (
    BAD_EVERY,
    BAD_KINDS,
    BAD_OFFSET,
    TEST_EVERY,
    TEST_OFFSET,
    build_patient,
)

__all__ = [
    "BAD_EVERY",
    "BAD_KINDS",
    "BAD_OFFSET",
    "COMPARATORS",
    "ISSUE11_SHAPES",
    "LAB_VARIANTS",
    "SHAPE_SHARE",
    "TEST_EVERY",
    "TEST_OFFSET",
    "build_patient",
]
