"""The nightly DAG's dbt docs site, regenerated only when what it shows can have changed.

``dbt docs generate`` parses the whole project (~150 models, ~500 tests), compiles every
node and reads the warehouse catalog: in the DAG's ``reports`` task that is a second dbt
parse in a second process (the producer's build parsed in its own), a fifth of the night's
CPU at 1,000 patients. The site is a function of the dbt project (models, macros, seeds and
their YAML), the dbt, adapter and TrialScreen releases and the warehouse it describes, not of
the night's data (the catalog holds schemas, tables, columns and types, no row counts). So
after a published night the DAG regenerates it when one of those changed, and records what it
was generated from beside it; a night with nothing changed, or one that published nothing,
keeps the site (docs/decisions.md, "The DAG's cost against `trialscreen run`, task by task":
"The dbt docs site only when the project changed").
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

DOCS_DIR = "dbt_docs"
KEY_FILE = ".generated-from.json"  # beside index.html: what the site was generated from


def docs_key(warehouse: str | Path) -> str:
    """What the dbt docs site is a function of: the build fingerprint's releases and project
    files (``pipeline.build_fingerprint``), the TrialScreen code version, and the warehouse
    the catalog is read from (engine and database, never a password)."""
    from trialscreen.pipeline import build_fingerprint, code_version, transform_url
    from trialscreen.transform import dbt_target

    target = dbt_target(transform_url(warehouse))
    identity = {k: v for k, v in target.env.items() if k != "TRIALSCREEN_PG_PASSWORD"}
    parts = [build_fingerprint("dbt docs"), code_version(), target.target, json.dumps(identity)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def docs_current(reports_dir: Path, key: str) -> bool:
    """Whether ``<reports_dir>/dbt_docs/index.html`` was generated, after a published night,
    from what ``key`` describes."""
    docs = Path(reports_dir) / DOCS_DIR
    try:
        recorded = json.loads((docs / KEY_FILE).read_text())
    except (OSError, ValueError):
        return False
    return (docs / "index.html").is_file() and recorded.get("key") == key


def refresh_dbt_docs(warehouse: str | Path, reports_dir: Path, published: bool) -> bool:
    """Regenerate the dbt docs site after a published night unless it is current
    (:func:`docs_current`); True when it was generated. A night that did not publish keeps
    the site as it is: the site describes the published tables, and such a night may have
    left tables out of the catalog (or failed before there was a warehouse); the next
    published night generates it if it is not current."""
    if not published:
        log.info("dbt docs kept: nothing was published tonight")
        return False
    from trialscreen.pipeline import transform_url
    from trialscreen.report import write_index
    from trialscreen.transform import generate_docs

    key = docs_key(warehouse)
    docs = Path(reports_dir) / DOCS_DIR
    if docs_current(reports_dir, key):
        log.info("dbt docs unchanged: the project, releases and warehouse are those of the site")
        return False
    (docs / KEY_FILE).unlink(missing_ok=True)  # a failed generation leaves no stale key
    generate_docs(transform_url(warehouse), docs)
    (docs / KEY_FILE).write_text(json.dumps({"key": key}) + "\n")
    write_index(Path(reports_dir))  # the index links the dbt docs from the first night on
    return True
