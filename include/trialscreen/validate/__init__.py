"""The quality gate: Great Expectations over the landed feeds and the candidate tables.

Suites are data (``expectations/<suite>.yml``, format in ``expectations/README.md``): each
lists *assets* — a warehouse table, or a SQL check that returns one row of violation counts —
with the expectations that hold on it, each ``blocking: true|false``. A blocking failure stops
publication; a warning is reported.

Each asset is a query GX runs on the warehouse through a SQL datasource (on DuckDB a
registered type holding one connection: GX's generic one silently fails there,
docs/decisions.md#gate-in-the-warehouse), so expectations are SQL aggregates and the gate's
memory does not grow with the tables. Only the columns a suite lists are selected; identifier
columns of raw tables are selected as presence flags, so no MRN, name, birth date or file name
reaches GX or its Data Docs. A missing table is validated as an empty pandas frame.

Data Docs accumulate in a file context under ``<reports_dir>/data_docs``. Each asset is one
GX expectation suite named after the asset (``marts.screening_results``), stored when its
suite file changes it; each night's validation of it is one stored validation result.

``schema_map`` lets the caller validate candidate tables before publish: with
``{"marts": "marts_candidate"}`` the asset ``marts.screening_results`` is read from
``marts_candidate.screening_results``, while checks against the *published* tables
(``${published_marts}``) keep reading ``marts``.
"""

from trialscreen.validate.runner import (
    AssetRead,
    ValidationOutcome,
    query_frame,
    read_asset,
    validate,
)
from trialscreen.validate.suites import (
    DEFAULT_SUITES,
    EXPECTATIONS_DIR,
    EXPECTATIONS_DIR_ENV,
    MASK_VALUE,
    OTHER_VALUE,
    PHI_COLUMNS,
    SCHEMAS,
    Asset,
    Expectation,
    Suite,
    SuiteError,
    expectations_dir,
    load_suite,
)

__all__ = [
    "DEFAULT_SUITES",
    "EXPECTATIONS_DIR",
    "EXPECTATIONS_DIR_ENV",
    "MASK_VALUE",
    "OTHER_VALUE",
    "PHI_COLUMNS",
    "SCHEMAS",
    "Asset",
    "AssetRead",
    "Expectation",
    "Suite",
    "SuiteError",
    "ValidationOutcome",
    "expectations_dir",
    "load_suite",
    "query_frame",
    "read_asset",
    "validate",
]
