"""dbt's command line, with the project's parse read from where ``trialscreen run`` keeps it.

The DAG's dbt build runs in a process of its own (Cosmos's watcher producer runs
``trialscreen/bin/dbt``, which runs :mod:`trialscreen.dbt_output`, which runs this). The real
``dbt`` command parses the whole project on every night: dbt's own partial parsing never
applies, because the run's vars (``run_id``, ``screening_date``) change every night and dbt
starts over when the vars or the profile change. That parse was about 7 s of the producer's
30 at 1,000 patients, a cost ``trialscreen run`` does not pay (docs/decisions.md, "The DAG's
dbt build reads the kept parse").

So this runs the same command through ``dbtRunner`` with the manifest that
:func:`trialscreen.dbt_parse._parsed_manifest` keeps: parsed once per project files, target,
warehouse and non-run vars, and read from the cache folder after that. The command line, the
output (dbt's own log lines, ``--log-format json`` as Cosmos asks) and the exit status are
dbt's: 0 success, 1 a node failed, 2 dbt did not finish. Without a warehouse in the
environment (a Spark target) or when the kept parse cannot be had, dbt parses as it always
did.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any


def kept_parse(argv: list[str], workdir: str) -> Any:
    """The parsed manifest for the dbt command ``argv`` (None: dbt parses itself).

    The parse is keyed on the project the command's ``--project-dir`` is a copy of (Cosmos
    runs dbt in a temporary folder of links to the project's files), so it is the parse
    ``trialscreen run`` keeps for the same project, target, warehouse and vars."""
    from trialscreen.dbt_output import _warehouse_url, cli_option, cli_vars
    from trialscreen.dbt_parse import _parse_key, _parsed_manifest
    from trialscreen.transform import dbt_target

    url = _warehouse_url(dict(os.environ))
    if not argv or url is None:
        return None
    copy = Path(cli_option(argv, "--project-dir") or os.getcwd())
    project = (copy / "dbt_project.yml").resolve().parent  # the links' target
    dbt_vars = cli_vars(argv)
    if dbt_vars is None:
        return None
    target = dbt_target(url)
    key = _parse_key(argv[0], project, target, dbt_vars)
    common = ["--project-dir", str(project), "--target", target.target]
    for flag in ("--profiles-dir", "--profile"):
        if (value := cli_option(argv, flag)) is not None:
            common += [flag, value]
    # the parse writes nothing into the project (its files may be read-only) and prints
    # nothing: the command that follows prints what dbt prints
    common += [
        "--target-path",
        str(Path(workdir) / "target"),
        "--log-path",
        str(Path(workdir) / "logs"),
        "--log-level",
        "none",
        "--log-level-file",
        "none",
    ]
    return _parsed_manifest(key, common, dbt_vars)


def main(argv: list[str] | None = None) -> int:
    from dbt.cli.main import dbtRunner

    args = list(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="trialscreen-dbt-parse-") as workdir:
        manifest = kept_parse(args, workdir)
    result = dbtRunner(manifest=manifest).invoke(args)
    if result.success:
        return 0
    return 2 if result.exception is not None else 1


if __name__ == "__main__":
    sys.exit(main())
