# The Feast feature server of the optional layer (charts/feast): `feast serve` on the feature repo
# optional/feast. Its own pinned requirements file (Feast needs numpy>=2), the same one the local
# profile's feast environment is built from.
# Build from the repository root: docker build -f docker/feast.Dockerfile -t onecommit/feast .
# BASE_IMAGE: `invoke images` passes onecommit/base (docker/base.Dockerfile).
ARG BASE_IMAGE=python:3.11.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app

COPY requirements/feast.txt /app/requirements.txt
RUN pip install -r /app/requirements.txt

# features.py imports onecommit.features (the data set's schema).
COPY onecommit /app/onecommit
COPY optional/feast /app/optional/feast

# UID/GID 10001: the chart's securityContext.runAsUser; HOME is /tmp (emptyDir).
RUN groupadd --gid 10001 feast \
    && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin feast
USER 10001:10001
WORKDIR /app/optional/feast
EXPOSE 6566
CMD ["feast", "-f", "feature_store.cluster.yaml", "serve", "--host", "0.0.0.0"]
