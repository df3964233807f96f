# The MLflow tracking server and model registry (`mlflow server`), for charts/mlflow.
# Same pinned requirements file as the local profile's mlflow environment.
# Build from the repository root: docker build -f docker/mlflow.Dockerfile -t onecommit/mlflow .
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
    PYTHONUNBUFFERED=1

COPY requirements/mlflow.txt /app/requirements.txt
RUN uv pip install --no-cache --compile-bytecode --python "$(command -v python)" -r /app/requirements.txt

# UID/GID 10001: the chart's securityContext.runAsUser; HOME is /tmp (emptyDir).
RUN groupadd --gid 10001 mlflow \
    && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin mlflow
USER 10001:10001
WORKDIR /tmp
EXPOSE 5000
# The chart passes the backend store, artifact destination and workers.
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]
