# The Feast feature server of the optional layer (charts/feast; compose's `optional` profile):
# `feast serve` on the feature repo optional/feast. Its own pinned requirements file (Feast needs
# numpy>=2), the same one the local profile's feast environment is built from, installed in a
# virtual environment at FEAST_ENV: the platform image copies it from here to run Feast jobs
# (training sets for DAG tasks) beside Airflow, whose environment pins numpy<2.
# Build from the repository root: docker build -f docker/feast.Dockerfile -t onecommit/feast .
# BASE_IMAGE: `invoke images` passes onecommit/base (docker/base.Dockerfile).
ARG BASE_IMAGE=python:3.11.11-slim-bookworm
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
    FEAST_ENV=/opt/onecommit/envs/feast
ENV PATH=${FEAST_ENV}/bin:$PATH

COPY requirements/feast.txt /app/requirements.txt
RUN python -m venv ${FEAST_ENV} && uv pip install --no-cache --compile-bytecode \
    --python ${FEAST_ENV}/bin/python -r /app/requirements.txt

# UID/GID 10001: the chart's securityContext.runAsUser; HOME is /tmp (emptyDir).
RUN groupadd --gid 10001 feast \
    && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin feast
USER 10001:10001
WORKDIR /app/optional/feast
EXPOSE 6566
CMD ["feast", "-f", "feature_store.cluster.yaml", "serve", "--host", "0.0.0.0"]

# The feature repo, and the code last: features.py and the Feast jobs import onecommit.features
# (the data set's schema) and onecommit.files (the one atomic writer) only, so a change
# elsewhere in onecommit/ rebuilds nothing here.
COPY optional/feast /app/optional/feast
COPY onecommit/__init__.py /app/onecommit/__init__.py
COPY onecommit/files.py /app/onecommit/files.py
COPY onecommit/features /app/onecommit/features
