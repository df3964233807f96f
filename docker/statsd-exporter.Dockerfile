# Airflow's statsd metrics as Prometheus series, from Debian's package, with the mapping the
# rules expect (compose/statsd-mapping.yml, mounted at run time).
ARG BASE_IMAGE=python:3.11.11-slim-bookworm
FROM ${BASE_IMAGE}

RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus-statsd-exporter \
    && rm -rf /var/lib/apt/lists/*
USER nobody
EXPOSE 9102 9125/udp
ENTRYPOINT ["/usr/bin/prometheus-statsd-exporter"]
