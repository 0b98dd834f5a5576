"""TrialScreen nightly pre-screening: ingest → dbt (Cosmos) → validate → publish → reports.

Thin by design: every task calls one function of ``trialscreen.pipeline`` (the same ones
``trialscreen run`` calls); dbt runs as an astronomer-cosmos task group loaded from the
precompiled manifest (``dbt_project/target/manifest.json``, written by ``make install`` /
``trialscreen manifest``), so parsing this file never calls dbt.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import Param, dag, task
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior

if TYPE_CHECKING:
    from airflow.sdk.bases.decorator import Task

REPO = Path(os.environ.get("TRIALSCREEN_HOME", Path(__file__).resolve().parents[1]))
DBT_DIR = REPO / "dbt_project"
MANIFEST = Path(os.environ.get("TRIALSCREEN_DBT_MANIFEST", DBT_DIR / "target" / "manifest.json"))
SCHEDULE = os.environ.get("TRIALSCREEN_SCHEDULE", "0 2 * * *")
TIMEZONE = os.environ.get("TRIALSCREEN_TIMEZONE", "UTC")
WAREHOUSE = os.environ.get("TRIALSCREEN_WAREHOUSE_URL", str(REPO / "trialscreen.duckdb"))
DROPS = os.environ.get("TRIALSCREEN_DROPS_DIR", str(REPO / "drops"))
REPORTS = os.environ.get("TRIALSCREEN_REPORTS_DIR", str(REPO / "reports"))
DBT_TARGET = "postgres" if WAREHOUSE.startswith("postgres") else "duckdb"

DOC = """
### TrialScreen nightly

Screens every patient for the configured trial **as of the run's logical date** (the
screening date), from the feed files in the drop directory.

1. `start_run` checks the trial definition and configuration, records the run.
2. `ingest_*` lands new FHIR / HL7 / CSV files (content-hash registry: re-delivered files
   are skipped; bad records go to `quarantine.records`).
3. `prepare_build` pseudonymizes new MRNs and writes the trial definition to `config.*`.
4. `dbt` (Cosmos) builds staging → intermediate → marts into the `*_candidate` schemas.
5. `validate` runs the Great Expectations suites on the feeds and the candidate tables.
6. `publish` swaps the candidate tables in (one transaction, each table lock waited for at
   most `TRIALSCREEN_PUBLISH_LOCK_TIMEOUT`); skipped when validation fails, so yesterday's
   tables stay published and the run fails.
7. `reports` writes the screening report and Data Docs; `notify` logs counts (no PHI).

A run with no new files still runs: the screening date moves every night, so windows
(labs within 28 days…) and ages change even when no data arrived.
"""


def _context() -> tuple[dict[str, Any], pendulum.Date, str]:
    """The run's params, screening date and Airflow run id.

    The screening date is the logical date taken in the hospital time zone
    (``trialscreen.settings.hospital_timezone``), not the UTC ``ds``: a run scheduled at
    00:30 in UTC+2 screens as of its own local day.
    """
    from airflow.sdk import get_current_context

    from trialscreen.settings import hospital_timezone

    context = get_current_context()
    logical = context.get("logical_date")
    if logical is None:  # a run triggered without a logical date: its ds (UTC) is all there is
        parsed = pendulum.parse(context["ds"])
        assert isinstance(parsed, pendulum.DateTime)  # ds is YYYY-MM-DD: a DateTime
        logical = parsed
    local = pendulum.instance(logical).in_timezone(hospital_timezone())
    return context["params"], local.date(), context["run_id"]


def _warehouse(params: dict[str, Any]) -> str:
    return str(params["warehouse"])


@dag(
    dag_id="trialscreen_nightly",
    schedule=SCHEDULE,
    start_date=pendulum.datetime(2026, 1, 1, tz=TIMEZONE),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["trialscreen", "screening", "phi"],
    render_template_as_native_obj=True,
    default_args={
        "owner": "trialscreen",
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=30),
    },
    params={
        "trial": Param("axiom", type="string", description="trial id or YAML path"),
        "input_dir": Param(DROPS, type="string", description="drop dir with fhir/ hl7/ csv/"),
        "warehouse": Param(WAREHOUSE, type="string", description="DuckDB path or postgresql://"),
        "reports_dir": Param(REPORTS, type="string", description="where reports are written"),
    },
)
def trialscreen_nightly() -> None:
    @task
    def start_run() -> str:
        from trialscreen.pipeline import start_run as start

        params, screening_date, run_id = _context()
        return start(_warehouse(params), screening_date, [params["trial"]], run_id)

    @task
    def detect_new_files() -> dict[str, int]:
        from trialscreen.ingest import new_file_counts

        params, _, _ = _context()
        return new_file_counts(_warehouse(params), Path(params["input_dir"]))

    def ingest(feed: str) -> Task[[str], dict[str, object]]:  # a task factory
        @task(task_id=f"ingest_{feed}")
        def _ingest(run: str) -> dict[str, object]:
            from trialscreen.pipeline import ingest_feed

            params, _, _ = _context()
            counts = ingest_feed(_warehouse(params), Path(params["input_dir"]), feed, run)
            return counts.as_row()

        return _ingest

    @task
    def prepare_build(run: str) -> dict[str, object]:
        from trialscreen.pipeline import dbt_vars, prepare_build, transform_url
        from trialscreen.transform import dbt_target

        params, screening_date, _ = _context()
        prepare_build(_warehouse(params), [params["trial"]])
        # dbt connects as the transformer role when the deployment names one (compose does:
        # TRIALSCREEN_TRANSFORM_URL, the same URL validate, publish and reports use); the
        # engine is a deployment setting: Cosmos renders its profile target at parse time
        target = dbt_target(transform_url(_warehouse(params)))
        if target.target != DBT_TARGET:
            raise ValueError(
                f"params.warehouse is a {target.target} warehouse but this deployment builds "
                f"dbt on {DBT_TARGET} (set TRIALSCREEN_WAREHOUSE_URL to change the engine)"
            )
        # XComs are stored in the metadata DB and shown in the UI: no password in them; dbt
        # reads TRIALSCREEN_PG_PASSWORD from the worker's environment (compose sets it)
        env = {k: v for k, v in target.env.items() if k != "TRIALSCREEN_PG_PASSWORD"}
        return {"env": env, "vars": dbt_vars(screening_date, run)}

    @task
    def validate(run: str) -> dict[str, object]:
        from trialscreen.pipeline import validate as run_validation

        params, screening_date, _ = _context()
        outcome = run_validation(
            _warehouse(params), Path(params["reports_dir"]), run, screening_date
        )
        return {"success": outcome.success, "result": outcome.as_json()}

    @task
    def publish(run: str, validation: dict[str, Any]) -> dict[str, int]:
        from trialscreen.pipeline import ValidationFailed, finish_run
        from trialscreen.pipeline import publish as do_publish

        params, _, _ = _context()
        if not validation["success"]:
            finish_run(_warehouse(params), run, "failed", message="quality gate failed")
            raise ValidationFailed("quality gate failed: nothing published (see Data Docs)")
        return do_publish(_warehouse(params), run)

    @task(trigger_rule="all_done")
    def reports(run: str) -> str:
        from trialscreen.pipeline import write_reports

        params, _, _ = _context()
        return str(
            write_reports(_warehouse(params), Path(params["reports_dir"]), run, dbt_docs=True)
        )

    @task
    def notify(run: str, published: dict[str, int]) -> dict[str, int]:
        import logging

        from trialscreen.pipeline import candidate_counts

        params, _, _ = _context()
        counts = candidate_counts(_warehouse(params))
        logging.getLogger("trialscreen.notify").warning(
            "run %s published %d tables; candidates %s", run, len(published), counts
        )
        return counts

    run = start_run()
    new_files = detect_new_files()
    ingested = [ingest(feed)(run) for feed in ("fhir", "hl7", "csv")]
    settings = prepare_build(run=run)
    run >> new_files >> ingested[0]
    ingested[0] >> ingested[1] >> ingested[2] >> settings

    dbt = DbtTaskGroup(
        group_id="dbt",
        project_config=ProjectConfig(
            dbt_project_path=DBT_DIR,
            manifest_path=MANIFEST,
            project_name="trialscreen",
            install_dbt_deps=False,  # the project has no packages: nothing to fetch
        ),
        profile_config=ProfileConfig(
            profile_name="trialscreen",
            target_name=DBT_TARGET,
            profiles_yml_filepath=DBT_DIR / "profiles.yml",
        ),
        execution_config=ExecutionConfig(
            execution_mode=ExecutionMode.LOCAL, invocation_mode=InvocationMode.DBT_RUNNER
        ),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            test_behavior=TestBehavior.AFTER_ALL,
            emit_datasets=False,  # Airflow assets per model: noise for a single nightly DAG
        ),
        # per-run connection settings and vars come from prepare_build's XCom (templated at
        # run time; ProjectConfig.env_vars would fix them at parse time)
        operator_args={
            "env": "{{ ti.xcom_pull(task_ids='prepare_build')['env'] }}",
            "vars": "{{ ti.xcom_pull(task_ids='prepare_build')['vars'] }}",
        },
    )
    checked = validate(run=run)
    settings >> dbt >> checked
    published = publish(run=run, validation=checked)
    report = reports(run=run)
    published >> report
    notify(run=run, published=published)


trialscreen_nightly()
