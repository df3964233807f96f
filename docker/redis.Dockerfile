# Redis from Debian's package: the Feast online store of compose's `optional` profile
# (compose/compose.yaml); its data is the named volume at /var/lib/redis.
ARG BASE_IMAGE=python:3.11.11-slim-bookworm
FROM ${BASE_IMAGE}

RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/*
# Debian's package runs it as its own `redis` user, which owns /var/lib/redis.
USER redis
WORKDIR /var/lib/redis
EXPOSE 6379
ENTRYPOINT ["/usr/bin/redis-server"]
