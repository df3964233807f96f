# Prometheus from Debian's package for the compose profile; compose/prometheus.yml and the
# project's rules (baseline/monitoring/rules/) are mounted at run time.
ARG BASE_IMAGE=python:3.11.11-slim-bookworm
FROM ${BASE_IMAGE}

RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/*
# Debian's package runs it as its own `prometheus` user.
USER prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
