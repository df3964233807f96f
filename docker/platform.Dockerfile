# The platform image: Airflow 3, the lifecycle library and the DAGs. Runs every Airflow component
# of the official chart (charts/airflow, KubernetesExecutor task pods included) and the PostSync
# sync Job. Same pinned requirements file as the local profile's platform environment.
# Build from the repository root: docker build -f docker/platform.Dockerfile -t onecommit/platform .
# BASE_IMAGE: `invoke images` passes onecommit/base (docker/base.Dockerfile); FEAST_IMAGE,
# built first from the same base, onecommit/feast (docker/feast.Dockerfile).
ARG BASE_IMAGE=python:3.11.11-slim-bookworm
ARG FEAST_IMAGE=onecommit/feast:0.1.0
FROM ${FEAST_IMAGE} AS feast
FROM ${BASE_IMAGE}

# uv installs the requirements, several times pip's speed on a cold cache (requirements/uv.txt
# pins it; the first layers, shared by every image on the same base). Into the Python on PATH,
# named by its path (Debian's base has it in a virtual environment, which `--system` would pass
# over), compiled to bytecode as pip does (processes would otherwise compile on every start).
COPY requirements/uv.txt /tmp/uv.txt
RUN pip install --no-cache-dir --disable-pip-version-check -r /tmp/uv.txt

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    AIRFLOW_HOME=/opt/airflow

# git: the sync Job reads the model spec of the synced commit from the GitOps repository.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*

COPY requirements/platform.txt /app/requirements.txt
RUN uv pip install --no-cache --compile-bytecode --python "$(command -v python)" -r /app/requirements.txt
# What clusters and compose add (KubernetesExecutor, PostgreSQL, statsd), its own layer so the
# large one above stays cached when only these change.
COPY requirements/platform-cluster.txt /app/requirements-cluster.txt
RUN uv pip install --no-cache --compile-bytecode --python "$(command -v python)" -r /app/requirements-cluster.txt
# Feast's environment (numpy>=2, beside Airflow's numpy<2), where DAG tasks run the training-set
# join while the optional layer is attached (onecommit.features.offline). The same base image
# makes its interpreter links valid here; ONECOMMIT_ENVS_PATH=/opt/onecommit/envs finds it.
COPY --from=feast /opt/onecommit/envs/feast /opt/onecommit/envs/feast

# UID/GID 50000: the official Airflow chart's uid (values: airflow.uid/gid) and our chart's.
# The training spool (compose: the volume the scheduler shares with the trainer) starts here.
RUN groupadd --gid 50000 airflow \
    && useradd --uid 50000 --gid 50000 --home-dir /opt/airflow --shell /usr/sbin/nologin airflow \
    && install -d -o 50000 -g 50000 /opt/airflow \
    && install -d -m 1777 /var/spool/onecommit-training
USER 50000:50000
WORKDIR /opt/airflow
EXPOSE 8080
# No ENTRYPOINT: the official chart gives every container its full command line
# (`bash -c "exec airflow scheduler"`, `airflow db check-migrations`, task pods' `airflow tasks run`).
CMD ["airflow", "version"]

# The feature repo (Feast's training-set job reads it), then the code: a change to the code
# rebuilds its two layers only.
COPY optional/feast /app/optional/feast
COPY onecommit /app/onecommit
# The official chart's default DAG folder is $AIRFLOW_HOME/dags.
COPY --chown=50000:50000 dags /opt/airflow/dags
