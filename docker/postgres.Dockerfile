# PostgreSQL 15 from Debian for the compose profile: Airflow's metadata, MLflow's backend store
# and the serving state (compose/compose.yaml). docker/postgres-init.sh creates the cluster and
# the three databases on the first start.
ARG BASE_IMAGE=python:3.11.11-slim-bookworm
FROM ${BASE_IMAGE}

RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/*

COPY docker/postgres-init.sh /usr/local/bin/postgres-init
RUN chmod 0755 /usr/local/bin/postgres-init \
    && install -d -o postgres -g postgres -m 0700 /var/lib/onecommit-postgres
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/onecommit-postgres/data
USER postgres
EXPOSE 5432
CMD ["postgres-init"]
