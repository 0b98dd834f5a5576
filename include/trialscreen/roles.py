"""Warehouse roles and grants on PostgreSQL (docs/specification.md#phi-rules): who may read and
write which schema.

``ensure_roles(admin_url)`` runs as an administrator (a superuser, or a role with CREATEROLE
that may become the roles it manages) and converges the warehouse to the table below. It is
idempotent and meant to run before every nightly run (the compose ``airflow-init`` service
runs it at start-up; ``python -m trialscreen.roles`` reads ``TRIALSCREEN_ADMIN_URL``).

    role                      writes (USAGE, CREATE; owns)          reads (USAGE, SELECT)
    trialscreen_loader        raw, quarantine, audit, config,       (its own tables)
                              restricted (patient_keys)
    trialscreen_transformer   staging, intermediate, marts,         raw, quarantine, config,
                              restricted, reference, audit,         audit, decisions,
                              marts_candidate,                      restricted (patient_keys)
                              restricted_candidate
    trialscreen_analyst       -                                     marts
    trialscreen_coordinator   decisions (worklist decisions and     marts, restricted
                              export audit, trialscreen.worklist)

Write-audit-publish (``trialscreen.pipeline``) on these roles: the loader lands feeds and keeps
the run rows; the transformer builds ``marts_candidate`` and ``restricted_candidate`` (schemas
made here: it has no CREATE on the database), the quality gate reads them as the transformer,
and publish copies them into ``marts`` and ``restricted`` as the transformer, whose default
privileges there give the new tables to the analyst and coordinator again. Nobody else can
see a candidate schema.

Tables are owned by the role that creates them (the loader for landed feeds, the transformer
for dbt models). ``ALTER DEFAULT PRIVILEGES FOR ROLE <writer> IN SCHEMA <s>`` grants SELECT to
the readers of ``s``, so a table dbt drops and recreates every night is readable again without
re-running this. Each run also *revokes* what the table does not grant (per schema, from every
managed role and from PUBLIC), so a hand-made grant does not survive the next night: nobody
but the loader (and the administrator) can write ``raw``, and the analyst reads ``marts`` only.

Passwords come from ``TRIALSCREEN_<ROLE>_PASSWORD`` (``TRIALSCREEN_LOADER_PASSWORD``, ...).
A role whose variable is unset or empty is made NOLOGIN. Passwords are hashed (SCRAM) on
the client before they are sent, so server statement logs never see them, and no log line
here carries a password.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trialscreen.warehouse import WarehouseUrl

log = logging.getLogger(__name__)

LOADER = "trialscreen_loader"
TRANSFORMER = "trialscreen_transformer"
ANALYST = "trialscreen_analyst"
COORDINATOR = "trialscreen_coordinator"

SCHEMAS = (
    "raw",
    "quarantine",
    "audit",
    "config",
    "staging",
    "intermediate",
    "marts",
    "restricted",
    "reference",
    "marts_candidate",
    "restricted_candidate",
    "decisions",
)

ADMIN_URL_ENV = "TRIALSCREEN_ADMIN_URL"
_LOCK_ID = 0x7472_6961_6C73  # "trials": serializes concurrent ensure_roles runs


@dataclass(frozen=True)
class RoleSpec:
    """One warehouse role: the schemas it writes (creates and owns tables in) and reads."""

    name: str
    writes: tuple[str, ...]
    reads: tuple[str, ...]
    purpose: str

    @property
    def password_env(self) -> str:
        """``trialscreen_analyst`` → ``TRIALSCREEN_ANALYST_PASSWORD``."""
        return f"{self.name.upper()}_PASSWORD"


ROLES: tuple[RoleSpec, ...] = (
    RoleSpec(
        LOADER,
        writes=("raw", "quarantine", "audit", "config", "restricted"),
        reads=(),
        purpose="the nightly loader: lands feeds, quarantine, audit, config, patient keys",
    ),
    RoleSpec(
        TRANSFORMER,
        writes=(
            "staging",
            "intermediate",
            "marts",
            "restricted",
            "reference",
            "audit",
            "marts_candidate",
            "restricted_candidate",
        ),
        reads=("raw", "quarantine", "config", "audit", "restricted", "decisions"),
        purpose="dbt, quality gate, publish: builds the candidate schemas, publishes marts",
    ),
    RoleSpec(ANALYST, writes=(), reads=("marts",), purpose="analysts: pseudonymized marts only"),
    RoleSpec(
        COORDINATOR,
        writes=("decisions",),
        reads=("marts", "restricted"),
        purpose="research coordinators: marts, re-identification (restricted), worklist decisions",
    ),
)
ROLE_NAMES = tuple(r.name for r in ROLES)

_WRITE_PRIVILEGES = "select, insert, update, delete, truncate, references, trigger"


def writers(schema: str) -> tuple[str, ...]:
    return tuple(r.name for r in ROLES if schema in r.writes)


def readers(schema: str) -> tuple[str, ...]:
    """Roles that read the tables other roles create in ``schema``."""
    return tuple(r.name for r in ROLES if schema in r.reads)


def plan(admin: str, is_superuser: bool, db: str) -> list[str]:
    """The grant statements for the whole table (roles already exist). Pure: easy to read."""
    q = _ident
    sql: list[str] = [
        "revoke create on schema public from public",
        *(f"grant connect, temporary on database {q(db)} to {q(r)}" for r in ROLE_NAMES),
    ]
    if not is_superuser:
        # ALTER DEFAULT PRIVILEGES FOR ROLE w needs membership in w (superusers skip this).
        sql += [f"grant {q(w)} to {q(admin)}" for w in (LOADER, TRANSFORMER, COORDINATOR)]
    for schema in SCHEMAS:
        s = q(schema)
        w_names, r_names = writers(schema), readers(schema)
        others = [r for r in ROLE_NAMES if r not in w_names]
        sql.append(f"create schema if not exists {s}")
        # converge: take away what this table does not grant
        sql.append(f"revoke all on schema {s} from public")
        sql.append(f"revoke all on all tables in schema {s} from public")
        for role in others:
            sql.append(f"revoke all on all tables in schema {s} from {q(role)}")
            sql.append(f"revoke create on schema {s} from {q(role)}")
            if role not in r_names:
                sql.append(f"revoke usage on schema {s} from {q(role)}")
        for writer in w_names:
            sql.append(f"grant usage, create on schema {s} to {q(writer)}")
        for reader in r_names:
            sql.append(f"grant usage on schema {s} to {q(reader)}")
            sql.append(f"grant select on all tables in schema {s} to {q(reader)}")
            # tables created later by a writer of this schema (dbt rebuilds nightly)
            for writer in (w for w in w_names if w != reader):
                sql.append(
                    f"alter default privileges for role {q(writer)} in schema {s} "
                    f"grant select on tables to {q(reader)}"
                )
    return sql


def ensure_roles(warehouse_url: str, passwords: dict[str, str] | None = None) -> None:
    """Create/update the four roles, the schemas and their grants; safe to run every night.

    ``warehouse_url`` is a ``postgresql://`` URL of an administrator on the warehouse
    database. ``passwords`` maps a role name (``trialscreen_analyst``) or its variable name
    (``TRIALSCREEN_ANALYST_PASSWORD``) to its password; the environment fills what it lacks.
    """
    import psycopg2  # type: ignore[import-untyped]

    url = WarehouseUrl.parse(warehouse_url)
    if url.engine != "postgres" or not url.url:
        raise ValueError(
            "ensure_roles: roles and grants exist on PostgreSQL only "
            f"(got {url.redacted()}); the embedded DuckDB file has no roles"
        )
    secrets = _passwords(passwords, os.environ)
    con = psycopg2.connect(url.url)
    try:
        with con, con.cursor() as cur:  # one transaction: all or nothing
            cur.execute("select pg_advisory_xact_lock(%s)", [_LOCK_ID])
            cur.execute(
                "select current_user, current_database(), "
                "(select rolsuper from pg_roles where rolname = current_user)"
            )
            admin, db, is_superuser = cur.fetchone()
            for spec in ROLES:
                _ensure_role(cur, spec, secrets.get(spec.name), bool(is_superuser), con)
            for statement in plan(admin, bool(is_superuser), db):
                cur.execute(statement)
            _grant_foreign_owned_tables(cur)
        log.info(
            "warehouse roles ensured",
            extra={"warehouse": url.redacted(), "roles": list(ROLE_NAMES)},
        )
    finally:
        con.close()


def _passwords(given: Mapping[str, str] | None, env: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for spec in ROLES:
        value = None
        if given:
            value = given.get(spec.name) or given.get(spec.password_env)
        value = value or env.get(spec.password_env)
        if value:
            out[spec.name] = value
    return out


def _ensure_role(
    cur: Any, spec: RoleSpec, password: str | None, is_superuser: bool, con: Any
) -> None:
    from psycopg2.extensions import encrypt_password  # type: ignore[import-untyped]

    name = _ident(spec.name)
    cur.execute("select 1 from pg_roles where rolname = %s", [spec.name])
    if cur.fetchone() is None:
        cur.execute(f"create role {name} nologin")
        log.info("created warehouse role", extra={"role": spec.name})
    if is_superuser:  # only a superuser may even restate these attributes
        cur.execute(
            f"alter role {name} nosuperuser nocreatedb nocreaterole noreplication nobypassrls"
        )
    cur.execute(f"comment on role {name} is %s", [f"TrialScreen: {spec.purpose}"])
    if password:
        verifier = encrypt_password(password, spec.name, con, "scram-sha-256")
        cur.execute(f"alter role {name} login password %s", [verifier])
    else:
        cur.execute(f"alter role {name} nologin")
        log.warning(
            "warehouse role has no password: created NOLOGIN",
            extra={"role": spec.name, "set": spec.password_env},
        )


def _grant_foreign_owned_tables(cur: Any) -> None:
    """Tables in a writer's schema owned by someone else (e.g. made by the admin before the
    roles existed) get DML for the schema's writers, so a run as the loader can still append.
    Tables owned by a managed role are left to that role (default privileges cover them)."""
    cur.execute(
        "select schemaname, tablename from pg_tables "
        "where schemaname = any(%s) and not (tableowner = any(%s))",
        [list(SCHEMAS), list(ROLE_NAMES)],
    )
    for schema, table in cur.fetchall():
        for writer in writers(schema):
            cur.execute(
                f"grant {_WRITE_PRIVILEGES} on {_ident(schema)}.{_ident(table)} to {_ident(writer)}"
            )


def _ident(name: str) -> str:
    """Quote an identifier (our names are constants; quoting keeps a strange DB name safe)."""
    return '"' + name.replace('"', '""') + '"'


def main(argv: list[str] | None = None) -> int:
    """``python -m trialscreen.roles``: ensure roles on ``$TRIALSCREEN_ADMIN_URL``.

    The URL is read from the environment only: on a command line its password would show in
    the process list.
    """
    from trialscreen import logs

    args = list(sys.argv[1:] if argv is None else argv)
    if args:
        print(
            f"usage: {ADMIN_URL_ENV}=postgresql://... python -m trialscreen.roles", file=sys.stderr
        )
        return 2
    logs.configure(1)
    url = os.environ.get(ADMIN_URL_ENV, "")
    if not url:
        print(
            f"trialscreen.roles: set {ADMIN_URL_ENV} to an admin postgresql:// URL", file=sys.stderr
        )
        return 2
    try:
        ensure_roles(url)
    except Exception as exc:  # one line, no URL (it may carry a password)
        print(
            f"trialscreen.roles: failed: {type(exc).__name__}: {exc}".splitlines()[0],
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
