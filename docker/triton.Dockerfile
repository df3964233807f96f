# CPU Triton Inference Server for kind and dev: the tritonserver binary shipped in the
# nvidia-pytriton wheel, from the same pinned requirements file as the local profile's triton
# environment. GPU clusters use NGC's tritonserver image instead (gitops/envs/prod values).
# Build from the repository root: docker build -f docker/triton.Dockerfile -t onecommit/triton .
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
# What describes the container comes before the large layer: each instruction after it costs a
# copy of the whole image on storage drivers without layering (vfs).
WORKDIR /tmp
EXPOSE 8000 8001 8002
ENTRYPOINT ["/usr/local/bin/tritonserver"]
# UID/GID 10001: the chart's securityContext.runAsUser; HOME is /tmp (emptyDir).
RUN groupadd --gid 10001 triton \
    && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin triton
COPY docker/tritonserver.sh /usr/local/bin/tritonserver

COPY requirements/triton.txt /app/requirements.txt
# The python backend's stub for this interpreter goes into the backend folder, and the stub must
# load this interpreter's own libpython first (see DESIGN §2): docker/tritonserver.sh puts
# LIBDIR first on LD_LIBRARY_PATH.
RUN uv pip install --no-cache --compile-bytecode --python "$(command -v python)" -r /app/requirements.txt \
    && site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
    && triton="$site/pytriton/tritonserver" \
    && cp "$triton/python_backend_stubs/3.11/triton_python_backend_stub" "$triton/backends/python/" \
    && chmod 0755 /usr/local/bin/tritonserver
USER 10001:10001
