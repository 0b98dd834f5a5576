# The TrialScreen image: Airflow 3 + dbt + the trialscreen package, installed from uv.lock
# exactly as CI installs it (dev tools excluded). Used by every airflow-* service in
# docker-compose.yml; see docs/deployment.md.
FROM python:3.11.14-slim-bookworm

ARG UV_VERSION=0.13.9
ARG APP_UID=50000

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    AIRFLOW_HOME=/opt/airflow \
    TRIALSCREEN_HOME=/opt/trialscreen \
    PATH=/opt/venv/bin:$PATH

# uv pinned to the Makefile's version, so the image resolves nothing: it replays uv.lock.
RUN pip install "uv==${UV_VERSION}"

WORKDIR /opt/trialscreen

# 1. third-party dependencies only (cached until pyproject.toml or uv.lock change)
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project

# 2. the project itself (installed editable, so include/trials and dbt_project stay beside it)
COPY include/ include/
COPY dags/ dags/
COPY dbt_project/ dbt_project/
COPY expectations/ expectations/
RUN uv sync --frozen --no-dev \
    && rm -rf /root/.cache

# Non-root runtime user (Airflow's conventional uid, group 0 as the official image does).
# The directories below become named volumes; Docker copies their ownership on first use.
RUN useradd --uid "${APP_UID}" --gid 0 --home-dir /opt/airflow --create-home --shell /bin/bash airflow \
    && mkdir -p /opt/airflow/logs /opt/airflow/auth /data/reports /data/drops \
    && chown -R "${APP_UID}:0" /opt/airflow /data \
    && chmod 0750 /opt/airflow/auth

USER ${APP_UID}
WORKDIR /opt/airflow

CMD ["airflow", "version"]
