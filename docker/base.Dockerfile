# The parent of every onecommit image (`invoke images` builds it first and passes it to the
# others as BASE_IMAGE): a pinned Python on Debian bookworm, trusting an extra CA bundle.
# BASE_IMAGE is the public Python image, or on networks that reach no image registry one made
# from Debian's packages (`invoke images --base debian`). The context holds healthcheck.py,
# requirements/base.txt (uv, the installer of every image) and extra-ca.crt: the CA
# bundle of a TLS-inspecting proxy (empty when none is given), without which uv, pip and every
# client in the images would refuse the re-signed certificates.
ARG BASE_IMAGE=python:3.11.11-slim-bookworm
FROM ${BASE_IMAGE}

COPY extra-ca.crt /usr/local/share/ca-certificates/onecommit-extra.crt
RUN update-ca-certificates
# Every image's container health check (compose/compose.yaml), standard library only.
COPY healthcheck.py /usr/local/bin/onecommit-healthcheck
RUN chmod 0755 /usr/local/bin/onecommit-healthcheck
# uv, pip, requests and httpx read their own CA bundles unless told to use the system's.
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
