"""The quality-gate runner: builds each asset's PHI-free query, has Great Expectations run
it where the data is (a SQL datasource on the warehouse: expectations become SQL aggregates,
so the gate's memory does not grow with the tables) and folds the results into a
:class:`ValidationOutcome` (see :mod:`trialscreen.validate`).

On DuckDB the datasource is :func:`duckdb_datasource_type`: GX's SQL datasource with one
persisted connection (GX's own SQL datasource opens a connection per metric query and reads
the rows after closing it, which DuckDB answers with no rows: every expectation failed with
an ``IndexError``), run under :data:`GATE_MEMORY_LIMIT_ENV` (DuckDB spills beyond it); a
metric query that fails is rolled back, so one erroring expectation does not fail the
others with it (:func:`_rollback_failed_metric`). A missing table or one without any listed
column is validated as an empty pandas frame, as before, so its column-set expectation fails
by name.

The checkpoints run without actions; the gate's Data Docs pages and index are built once,
after the last one (:func:`_build_data_docs`, docs/decisions.md#gate-cpu).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from trialscreen.validate.duckdb_datasource import (  # re-exported: their old home
    DEFAULT_GATE_MEMORY_LIMIT,
    GATE_MEMORY_LIMIT_ENV,
    duckdb_datasource_type,
    gate_memory_limit,
)
from trialscreen.validate.suites import (
    _DTYPES,
    DEFAULT_SUITES,
    MASK_VALUE,
    OTHER_VALUE,
    Asset,
    Expectation,
    Suite,
    SuiteError,
    _sql_text,
    load_suite,
)
from trialscreen.warehouse import Warehouse, WarehouseUrl

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_GATE_MEMORY_LIMIT",
    "GATE_MEMORY_LIMIT_ENV",
    "AssetRead",
    "ValidationOutcome",
    "duckdb_datasource_type",
    "gate_memory_limit",
    "query_frame",
    "read_asset",
    "validate",
]


# --------------------------------------------------------------------------------------------
# reading frames (native clients only)
# --------------------------------------------------------------------------------------------
@dataclass
class AssetRead:
    name: str
    source: str  # table read, or "sql check"
    rows: int
    note: str = ""  # "table not found", "skipped: ... missing"
    success: bool = True
    docs_page: str | None = None


def query_frame(wh: Warehouse, sql: str) -> pl.DataFrame:
    """A polars frame through the warehouse's native client (never a GX SQL datasource)."""
    return wh.query_frame(sql)


def _empty(columns: Mapping[str, str]) -> pl.DataFrame:
    return pl.DataFrame(schema={c: _DTYPES[t] for c, t in columns.items()})


def _conform(frame: pl.DataFrame, columns: Mapping[str, str]) -> pl.DataFrame:
    return frame.with_columns(
        [pl.col(c).cast(_DTYPES[t], strict=False) for c, t in columns.items() if c in frame.columns]
    )


# A SQL check whose result has at most this many rows (checks compute aggregates: one row,
# or one per feed) is read once and validated from memory; a larger one stays a query asset.
CHECK_ROWS_IN_MEMORY = 1000


def _count(wh: Warehouse, sql: str) -> int:
    return int(wh.scalar(f"select count(*) from ({sql}) as counted") or 0)


def asset_query(wh: Warehouse, asset: Asset) -> tuple[str | None, pl.DataFrame, AssetRead]:
    """What GX validates for one asset, PHI-free by construction: the query that selects it
    (run by GX on the warehouse), or, when there is nothing to query (a missing table, no
    listed column), ``None`` and the empty frame that stands for it."""
    if asset.sql is not None:
        missing = [t for t in asset.requires if not wh.table_exists(t)]
        if missing:
            note = f"skipped: {', '.join(missing)} not found"
            return None, _empty(asset.columns), AssetRead(asset.name, "sql check", 0, note)
        # GX takes a query asset that starts with SELECT (a check may start with WITH)
        sql = f"select * from ({asset.sql.strip().rstrip(';')}) as checked"
        # a check computes its aggregates once, here: GX would run a query asset's SQL again
        # for every metric of every expectation (docs/decisions.md, "A check's SQL runs once")
        head = query_frame(wh, f"{sql} limit {CHECK_ROWS_IN_MEMORY + 1}")
        if head.height <= CHECK_ROWS_IN_MEMORY:
            frame = _conform(head, asset.columns)
            return None, frame, AssetRead(asset.name, "sql check", frame.height)
        return sql, _empty({}), AssetRead(asset.name, "sql check", _count(wh, sql))
    assert asset.table is not None
    if not wh.table_exists(asset.table):
        info = AssetRead(asset.name, asset.table, 0, "table not found")
        if asset.required:  # no columns at all: the column-set expectation fails, blocking
            return None, pl.DataFrame(), info
        return None, _empty(asset.columns), info
    present = set(query_frame(wh, f"select * from {asset.table} where 1 = 0").columns)
    exprs = []
    for col in asset.columns:
        if col not in present:
            continue
        if col in asset.masked:
            exprs.append(f"case when {col} is null then null else '{MASK_VALUE}' end as {col}")
        elif col in asset.categorized:
            known = ", ".join(_sql_text(v) for v in asset.categorized[col])
            exprs.append(
                f"case when {col} is null then null when {col} in ({known}) then {col} "
                f"else '{OTHER_VALUE}' end as {col}"
            )
        else:
            exprs.append(col)
    if not exprs:
        info = AssetRead(asset.name, asset.table, 0, "no listed column found")
        return None, pl.DataFrame(), info
    sql = f"select {', '.join(exprs)} from {asset.table}"
    # a filter on the loader's columns applies only where the table has them
    filtered = re.findall(r"\b(run_id|load_id)\b", asset.where or "")
    if asset.where and all(c in present for c in filtered):
        sql += f" where {asset.where}"
    return sql, _empty({}), AssetRead(asset.name, asset.table, _count(wh, sql))


def read_asset(wh: Warehouse, asset: Asset) -> tuple[pl.DataFrame, AssetRead]:
    """The asset's rows as one frame (PHI-free by construction). The gate itself no longer
    reads them (GX queries the warehouse); kept for tools that want to look at an asset."""
    sql, frame, info = asset_query(wh, asset)
    if sql is None:
        return frame, info
    frame = _conform(query_frame(wh, sql), asset.columns)
    info.rows = frame.height
    return frame, info


def _to_pandas(frame: pl.DataFrame) -> pd.DataFrame:
    import pandas as pd

    if not frame.columns:
        return pd.DataFrame()
    return frame.to_pandas()


# --------------------------------------------------------------------------------------------
# outcome
# --------------------------------------------------------------------------------------------
@dataclass
class ValidationOutcome:
    """What the gate decided. ``success`` is False when any blocking expectation failed."""

    run_id: str
    screening_date: date
    success: bool
    blocking_failures: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    data_docs_index: Path | None = None
    suites: list[str] = field(default_factory=list)
    expectations_evaluated: int = 0
    assets: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["screening_date"] = self.screening_date.isoformat()
        data["data_docs_index"] = str(self.data_docs_index) if self.data_docs_index else None
        return data

    def as_json(self) -> str:
        """The summary kept in ``audit.pipeline_runs.validation_result``."""
        return json.dumps(self.as_dict(), default=str, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ValidationOutcome:
        data = json.loads(text)
        data["screening_date"] = date.fromisoformat(data["screening_date"])
        if data.get("data_docs_index"):
            data["data_docs_index"] = Path(data["data_docs_index"])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def summary(self) -> str:
        """One PHI-free line for logs and the CLI."""
        head = "passed" if self.success else "FAILED"
        parts = [
            f"validation {head}: {len(self.blocking_failures)} blocking failure(s), "
            f"{len(self.warnings)} warning(s) in {self.expectations_evaluated} expectations"
        ]
        if self.blocking_failures:
            parts.append(
                "; ".join(
                    f"{f['asset']}: {f['expectation']}({f.get('column') or ''})"
                    for f in self.blocking_failures[:5]
                )
            )
        return " — ".join(parts)


def _exception_class(info: Mapping[str, Any]) -> str:
    """The exception's class from GX's traceback text, never its message (which may quote a
    value: the outcome goes to the audit row and the report)."""
    lines = [ln for ln in str(info.get("exception_traceback") or "").splitlines() if ln.strip()]
    match = re.match(r"^([A-Za-z_][\w.]*)(?::|$)", lines[-1].strip()) if lines else None
    return f"{match.group(1).rsplit('.', 1)[-1]} raised" if match else "exception raised"


def _exception_message(info: Any) -> str | None:
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return _exception_class(info)
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return _exception_class(value)
    return None


def _observed(result: Mapping[str, Any], error: str | None) -> str:
    """A short PHI-free description of what was seen: counts and numeric samples only."""
    if error:
        return f"error: {error}"[:300]
    if "observed_value" in result:
        observed = result["observed_value"]
        details = (result.get("details") or {}).get("mismatched")
        if details:
            return f"{observed}; mismatched {details}"[:300]
        return str(observed)[:300]
    if "unexpected_count" in result:
        text = f"{result['unexpected_count']} of {result.get('element_count')} rows unexpected"
        sample = [
            v
            for v in result.get("partial_unexpected_list") or []
            if isinstance(v, int | float) and not isinstance(v, bool)
        ][:5]
        if sample:
            text += f" (e.g. {', '.join(str(v) for v in sample)})"
        return text
    return ""


# --------------------------------------------------------------------------------------------
# Great Expectations
# --------------------------------------------------------------------------------------------
def _quiet_gx() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    for name in ("great_expectations", "posthog", "backoff"):
        logging.getLogger(name).setLevel(logging.ERROR)


# GX resolves ${...} in a connection string from the environment: the URL (a PostgreSQL
# password) never lands in the context's great_expectations.yml
GX_URL_ENV = "TRIALSCREEN_GX_WAREHOUSE_URL"
GX_DATASOURCE = "warehouse"
# in a stored GX suite's meta: what it was stored from (runner._suite_fingerprint)
SUITE_FINGERPRINT = "trialscreen_fingerprint"


@contextmanager
def _gate_memory(wh: Warehouse) -> Iterator[None]:
    """The gate's DuckDB memory limit on the warehouse connection that counts the assets'
    rows (DuckDB keeps the blocks it read cached up to its limit, 80% of the machine's
    memory by default: 4.2 GB at 300,000 patients); restored afterwards."""
    if wh.engine != "duckdb":
        yield
        return
    previous = wh.scalar("select current_setting('memory_limit')")
    wh.execute(f"set memory_limit = '{gate_memory_limit()}'")
    try:
        yield
    finally:
        wh.execute(f"set memory_limit = '{previous}'")


def _gx_context(docs_root: Path) -> Any:
    _quiet_gx()
    duckdb_datasource_type()  # a context written by an earlier gate lists this type
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    docs_root.mkdir(parents=True, exist_ok=True)
    ctx = gx.get_context(mode="file", project_root_dir=str(docs_root))
    progress = ctx.variables.progress_bars
    if isinstance(progress, dict):
        progress = ProgressBarsConfig(**progress)
    changed = progress is None or progress.globally or progress.metric_calculations
    if changed:
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    # ${...} come from the environment only (the warehouse URL, GX_URL_ENV): without a
    # config-variables file GX stops re-reading and parsing that YAML on every lookup of a
    # context setting (~800 per gate; docs/decisions.md#gate-cpu)
    if ctx.variables.config_variables_file_path:
        # typed str, stored as Optional (None: no file)
        ctx.variables.config_variables_file_path = None  # type: ignore[assignment]
        changed = True
    if changed:
        ctx.variables.save()
        # the context registered its substitution sources when loaded: load it again
        ctx = gx.get_context(mode="file", project_root_dir=str(docs_root))
    _quiet_gx()
    return ctx


def _gx_expectation(exp: Expectation) -> Any:
    import great_expectations as gx

    class_name = "".join(part.capitalize() for part in exp.type.split("_"))
    cls = getattr(gx.expectations, class_name, None)
    if cls is None:
        raise SuiteError(f"expectation type '{exp.type}' is not a GX core expectation")
    meta: dict[str, Any] = {"blocking": exp.blocking}
    if exp.description:
        meta["description"] = exp.description
    notes = ("**blocking** — " if exp.blocking else "warning — ") + (exp.description or "")
    return cls(**exp.kwargs, meta=meta, notes=notes)


def _docs_index(docs_root: Path) -> Path:
    return docs_root / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"


def _warehouse_datasource(ctx: Any, url: WarehouseUrl, queries: Mapping[str, str]) -> Any:
    """The context's SQL datasource on the warehouse, made anew for each gate with one query
    asset (and its ``whole`` batch definition) per asset queried tonight, and no other:
    written to the context once, not once per asset and once per batch definition (GX
    rewrites its whole ``great_expectations.yml`` on each). The URL reaches GX through
    :data:`GX_URL_ENV`."""
    if url.engine == "duckdb":
        assert url.path is not None
        os.environ[GX_URL_ENV] = f"duckdb:///{url.path.resolve()}"
    else:
        assert url.url is not None
        os.environ[GX_URL_ENV] = url.url.replace("postgresql://", "postgresql+psycopg2://", 1)
    wanted = "trialscreen_duckdb" if url.engine == "duckdb" else "postgres"
    existing = ctx.data_sources.all().get(GX_DATASOURCE)
    if existing is not None and existing.type != wanted:
        ctx.data_sources.delete(GX_DATASOURCE)
    config: dict[str, Any] = {
        "connection_string": "${" + GX_URL_ENV + "}",
        "assets": [
            {"type": "query", "name": name, "query": sql, "batch_definitions": [{"name": "whole"}]}
            for name, sql in queries.items()
        ],
    }
    if url.engine == "duckdb":
        duckdb_datasource_type()  # registers add_or_update_trialscreen_duckdb
        return ctx.data_sources.add_or_update_trialscreen_duckdb(GX_DATASOURCE, **config)
    return ctx.data_sources.add_or_update_postgres(GX_DATASOURCE, **config)


def _close_datasource(datasource: Any) -> None:
    """Give the warehouse back: the DuckDB file (and its memory limit) before publish."""
    try:
        datasource.get_execution_engine().close()
    finally:
        datasource.get_engine().dispose()


def _frame_datasources(ctx: Any, frames: Mapping[str, Sequence[str]]) -> None:
    """The context's pandas datasources, one per suite, with a dataframe asset (and its
    ``whole`` batch definition) for each asset of ``frames`` (suite name -> asset names read
    as frames), the assets an earlier gate registered kept (its stored validation definitions
    name them). Written to the context once per suite that lacks one, as
    :func:`_warehouse_datasource`: adding them one by one rewrote the whole
    ``great_expectations.yml`` three times per asset on a new reports folder, a fifth of the
    gate's CPU on a small warehouse (docs/decisions.md#gate-cpu)."""
    for suite_name, names in frames.items():
        existing = ctx.data_sources.all().get(suite_name)
        # asset name -> its batch definitions' names, as the context has them
        definitions = {
            gx_asset.name: [d.name for d in gx_asset.batch_definitions]
            for gx_asset in (existing.assets if existing is not None else [])
        }
        missing = [name for name in names if "whole" not in definitions.get(name, [])]
        if not missing:  # every asset registered (a suite new here misses them all)
            continue
        for name in missing:
            definitions.setdefault(name, []).append("whole")
        assets = [
            {"type": "dataframe", "name": name, "batch_definitions": [{"name": d} for d in kept]}
            for name, kept in definitions.items()
        ]
        ctx.data_sources.add_or_update_pandas(suite_name, assets=assets)


def _batch_definition(ctx: Any, suite: Suite, asset: Asset, sql: str | None, warehouse: Any) -> Any:
    if sql is not None:  # GX runs the expectations as SQL on the warehouse
        return warehouse.get_asset(asset.name).get_batch_definition("whole")
    # registered by _frame_datasources
    return ctx.data_sources.get(suite.name).get_asset(asset.name).get_batch_definition("whole")


def _suite_fingerprint(suite: Suite, asset: Asset) -> str:
    """What the asset's stored GX suite must say: its expectations (type, arguments,
    blocking, description) and the asset's description, in order."""
    content = {
        "suite": suite.name,
        "description": asset.description,
        "expectations": [[e.type, e.kwargs, e.blocking, e.description] for e in asset.expectations],
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def _stored_suite(ctx: Any, suite: Suite, asset: Asset) -> tuple[Any, bool]:
    """The asset's GX expectation suite as the context stores it (its Data Docs page is
    rendered from the store), stored again only when the suite file changed it: GX's own
    ``add_or_update`` compares every expectation with the stored one, and the checkpoint's
    freshness checks compare them again (docs/decisions.md#gate-cpu). Returns the suite and
    whether it was stored now."""
    import great_expectations as gx
    from great_expectations.exceptions.exceptions import DataContextError

    fingerprint = _suite_fingerprint(suite, asset)
    try:
        stored = ctx.suites.get(asset.name)
    except DataContextError:
        stored = None
    if stored is not None and stored.meta.get(SUITE_FINGERPRINT) == fingerprint:
        return stored, False
    stored = ctx.suites.add_or_update(
        gx.ExpectationSuite(
            name=asset.name,
            expectations=[_gx_expectation(e) for e in asset.expectations],
            meta={
                "trialscreen_suite": suite.name,
                "description": asset.description,
                SUITE_FINGERPRINT: fingerprint,
            },
        )
    )
    return stored, True


def _run_asset(
    ctx: Any,
    site: Path,
    suite: Suite,
    asset: Asset,
    batch: Any,
    frame: pd.DataFrame | None,
    run_id: str,
) -> tuple[list[dict[str, Any]], list[Any]]:
    """One validation of the asset's suite on its batch (a query asset, or a dataframe asset
    given ``frame``), its result stored for Data Docs; returns per-expectation rows and the
    identifiers of what its Data Docs pages render (the validation result and the suite),
    built once for the whole gate by :func:`_build_data_docs`; the suite's page only when
    the suite was stored now or its page is missing (it shows the suite, not the night).
    What GX's ``ValidationDefinition.run`` does, without storing a checkpoint and a
    validation definition per asset and night and checking both against the store (a
    quarter of the gate's CPU on a small warehouse; nothing reads them)."""
    from great_expectations.constants import DATAFRAME_REPLACEMENT_STR
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )
    from great_expectations.validator.v1_validator import Validator

    gx_suite, stored_now = _stored_suite(ctx, suite, asset)
    validator = Validator(
        batch_definition=batch,
        batch_parameters={"dataframe": frame} if frame is not None else None,
        result_format="SUMMARY",
    )
    result = validator.validate_expectation_suite(gx_suite)
    gx_run = RunIdentifier(run_name=run_id)
    result.meta.update(
        {
            "run_id": gx_run,
            "validation_time": gx_run.run_time,
            "batch_parameters": {"dataframe": DATAFRAME_REPLACEMENT_STR}
            if frame is not None
            else None,
        }
    )
    suite_id = ExpectationSuiteIdentifier(name=gx_suite.name)
    result_id = ValidationResultIdentifier(
        expectation_suite_identifier=suite_id,
        run_id=gx_run,
        batch_identifier=validator.active_batch_id,
    )
    ctx.validation_results_store.store_validation_results(
        suite_validation_result=result,
        suite_validation_result_identifier=result_id,
        expectation_suite_identifier=suite_id,
    )
    rows: list[dict[str, Any]] = []
    for item in result.results:
        data: dict[str, Any] = dict(item.to_json_dict())
        config = data["expectation_config"]
        rows.append(
            {
                "success": bool(data["success"]),
                "type": config["type"],
                "kwargs": config.get("kwargs") or {},
                "meta": config.get("meta") or {},
                "observed": _observed(
                    data.get("result") or {}, _exception_message(data.get("exception_info"))
                ),
            }
        )
    suite_page = site / _suite_page(asset)
    return rows, [result_id] + ([suite_id] if stored_now or not suite_page.exists() else [])


def _build_data_docs(
    ctx: Any,
    site: Path,
    checked: Sequence[tuple[Suite, Asset, Any, AssetRead]],
    rendered: list[Any],
    run_id: str,
    failing: bool = False,
) -> None:
    """The gate's Data Docs in one build: the pages of this gate's validation results and
    suites, then the index once; each asset's page noted in its :class:`AssetRead`; the
    pages built localized for offline reading. A checkpoint's ``UpdateDataDocsAction``
    makes the same ``build_data_docs`` call for its own two pages, re-rendering the index
    (and compiling GX's page templates anew): once per asset, it was over half of the gate's
    CPU (docs/decisions.md#gate-cpu). ``failing``: an asset's run raised; the pages of those
    that ran are still built and localized (the index lists every stored result), and an
    error here is logged rather than hiding that one."""
    # GX links CDNs and a remote logo: point the pages at vendored copies (air-gapped
    # servers); the pages this build wrote, with the index, not the whole site's history
    from trialscreen.validate.offline_docs import localize_site

    try:
        if rendered:
            ctx.build_data_docs(resource_identifiers=rendered)
        for _, asset, _, info in checked:
            info.docs_page = _docs_page(site, asset, run_id)
        localize_site(site, _built_pages(checked, rendered))
    except Exception as exc:
        if not failing:
            raise
        log.warning(
            "quality gate: Data Docs of the validations that ran could not be built",
            extra={"error": type(exc).__name__},
        )


def _docs_page(site: Path, asset: Asset, run_id: str) -> str | None:
    """The asset's page of this run: validations/<suite name, dots as folders>/<run>/..."""
    folder = site / "validations" / Path(*asset.name.split(".")) / run_id
    pages = sorted(folder.glob("*/*.html"))
    return pages[-1].relative_to(site).as_posix() if pages else None


def _suite_page(asset: Asset) -> str:
    """The asset's suite page (site-relative): ``expectations/<name, dots as folders>.html``."""
    return Path("expectations", *asset.name.split(".")).as_posix() + ".html"


def _built_pages(
    checked: Sequence[tuple[Suite, Asset, Any, AssetRead]], rendered: Sequence[Any]
) -> list[str]:
    """The pages :func:`_build_data_docs` wrote for this gate (site-relative): each asset's
    validation page, and its suite's page, ``expectations/<suite name, dots as folders>.html``,
    when ``rendered`` (the identifiers built) names the suite: a suite unchanged since an
    earlier gate kept its page, localized then."""
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
    )

    suites = {i.name for i in rendered if isinstance(i, ExpectationSuiteIdentifier)}
    pages: list[str] = []
    for _, asset, _, info in checked:
        if asset.name in suites:
            pages.append(_suite_page(asset))
        if info.docs_page:
            pages.append(info.docs_page)
    return pages


def validate(
    warehouse_url: str,
    reports_dir: Path,
    run_id: str,
    screening_date: date,
    schema_map: dict[str, str] | None = None,
    suites: Sequence[str] = DEFAULT_SUITES,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
) -> ValidationOutcome:
    """Validate the warehouse with the named suites; never raises for bad data.

    ``settings`` overrides a suite's settings, e.g. ``{"marts": {"min_row_fraction": 0.8}}``.
    Data Docs go to ``<reports_dir>/data_docs`` (kept across runs).
    """
    started = time.monotonic()
    loaded = [
        load_suite(name, run_id, screening_date, schema_map, (settings or {}).get(name))
        for name in suites
    ]
    reads: list[tuple[Suite, Asset, str | None, pl.DataFrame, AssetRead]] = []
    with Warehouse.connect(warehouse_url) as wh, _gate_memory(wh):
        for suite in loaded:
            for asset in suite.assets:
                sql, frame, info = asset_query(wh, asset)
                reads.append((suite, asset, sql, frame, info))

    docs_root = Path(reports_dir) / "data_docs"
    ctx = _gx_context(docs_root)
    outcome = ValidationOutcome(
        run_id=run_id,
        screening_date=screening_date,
        success=True,
        data_docs_index=_docs_index(docs_root),
        suites=list(suites),
    )
    checked: list[tuple[Suite, Asset, list[dict[str, Any]], AssetRead]] = []
    rendered: list[Any] = []
    site = _docs_index(docs_root).parent
    previous_url = os.environ.get(GX_URL_ENV)
    queries = {asset.name: sql for _, asset, sql, _, _ in reads if sql is not None}
    frames: dict[str, list[str]] = {}
    for suite, asset, sql, _, _ in reads:
        if sql is None:
            frames.setdefault(suite.name, []).append(asset.name)
    _frame_datasources(ctx, frames)
    warehouse = _warehouse_datasource(ctx, WarehouseUrl.parse(warehouse_url), queries)
    failing = True
    try:
        for suite, asset, sql, frame, info in reads:
            batch = _batch_definition(ctx, suite, asset, sql, warehouse)
            pandas_frame = None if sql is not None else _to_pandas(frame)
            rows, ids = _run_asset(ctx, site, suite, asset, batch, pandas_frame, run_id)
            rendered += ids
            checked.append((suite, asset, rows, info))
        failing = False
    finally:
        _close_datasource(warehouse)
        if previous_url is None:
            os.environ.pop(GX_URL_ENV, None)
        else:
            os.environ[GX_URL_ENV] = previous_url
        _build_data_docs(ctx, site, checked, rendered, run_id, failing)
    for suite, asset, rows, info in checked:
        for row in rows:
            outcome.expectations_evaluated += 1
            if row["success"]:
                continue
            info.success = False
            kwargs = row["kwargs"]
            exp = Expectation(row["type"], kwargs, bool(row["meta"].get("blocking", True)))
            entry = {
                "suite": suite.name,
                "asset": asset.name,
                "expectation": row["type"],
                "column": exp.column,
                "observed": row["observed"] + (f" [{info.note}]" if info.note else ""),
                "description": row["meta"].get("description", ""),
            }
            (outcome.blocking_failures if exp.blocking else outcome.warnings).append(entry)
        outcome.assets.append({"suite": suite.name, **asdict(info)})
    outcome.success = not outcome.blocking_failures
    outcome.seconds = round(time.monotonic() - started, 2)
    log.info(
        "validation finished",
        extra={
            "run_id": run_id,
            "success": outcome.success,
            "blocking_failures": len(outcome.blocking_failures),
            "warnings": len(outcome.warnings),
            "seconds": outcome.seconds,
        },
    )
    return outcome
