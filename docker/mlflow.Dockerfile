# The MLflow tracking server and model registry (`mlflow server`), for charts/mlflow.
# Same pinned requirements file as the local profile's mlflow environment.
# Build from the repository root: docker build -f docker/mlflow.Dockerfile -t onecommit/mlflow .
# BASE_IMAGE: `invoke images` passes onecommit/base (docker/base.Dockerfile).
ARG BASE_IMAGE=python:3.11.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

COPY requirements/mlflow.txt /app/requirements.txt
RUN uv pip install -r /app/requirements.txt

# UID/GID 10001: the chart's securityContext.runAsUser; HOME is /tmp (emptyDir).
RUN groupadd --gid 10001 mlflow \
    && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin mlflow
USER 10001:10001
WORKDIR /tmp
EXPOSE 5000
# The chart passes the backend store, artifact destination and workers.
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]
