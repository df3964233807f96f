# The serving gateway (python -m onecommit.gateway), for charts/gateway.
# Same pinned requirements file as the local profile's gateway environment.
# Build from the repository root: docker build -f docker/gateway.Dockerfile -t onecommit/gateway .
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
    PYTHONPATH=/app
# What describes the container comes before the large layer: each instruction after it costs a
# copy of the whole image on storage drivers without layering (vfs).
WORKDIR /app
EXPOSE 9000
CMD ["python", "-m", "onecommit.gateway"]
# UID/GID 10001: the chart's securityContext.runAsUser; HOME and state live in /tmp (emptyDir).
RUN groupadd --gid 10001 onecommit \
    && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin onecommit

COPY requirements/gateway.txt /app/requirements.txt
RUN uv pip install --no-cache --compile-bytecode --python "$(command -v python)" -r /app/requirements.txt
USER 10001:10001

# The library last (a change to it rebuilds this layer only), importable from /app
# (PYTHONPATH); its dependencies are the pinned ones above.
COPY onecommit /app/onecommit
