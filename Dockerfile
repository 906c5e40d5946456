# Container image for opensrs-migration-exporter.
#
# The build stage turns the source tree into wheels. The runtime stage installs
# only those wheels, so neither the source tree nor the build tools end up in the
# image.
#
# NOTE: the base image is pinned by tag only. Add its digest to both FROM lines
# (python:3.11.14-slim-bookworm@sha256:...) to make builds reproducible.

FROM python:3.11.14-slim-bookworm AS build

WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter

# The wheel directory holds the project wheel and the wheels of its dependencies,
# so the runtime stage installs with --no-index and needs no network access.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .


FROM python:3.11.14-slim-bookworm

ARG VERSION=0.1.0

LABEL org.opencontainers.image.title="opensrs-migration-exporter" \
      org.opencontainers.image.description="Prometheus exporter for mailbox migrations into OpenSRS Hosted Email (OMA migration_status)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.14-slim-bookworm"

# A fixed UID and GID let Kubernetes check runAsNonRoot and let file secrets be
# granted to this user by number.
RUN groupadd --system --gid 10001 exporter \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin exporter

COPY --from=build /wheels /tmp/wheels
RUN pip install --no-cache-dir --no-index --find-links=/tmp/wheels \
        /tmp/wheels/opensrs_migration_exporter-*.whl \
    && rm -rf /tmp/wheels

# The exporter reads the password from the file that OPENSRS_PASSWORD_FILE
# names: a Docker or Compose secret, or a Kubernetes Secret volume.
# DL3064 flags the word PASSWORD in a variable name, but the value is a path.
# hadolint ignore=DL3064
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OPENSRS_PASSWORD_FILE=/run/secrets/opensrs_password

USER 10001:10001
EXPOSE 19877

# The check connects to 127.0.0.1 on the port in OPENSRS_WEB_LISTEN_ADDRESS. It
# ignores a port set with --web.listen-address and any HTTP proxy variables.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('OPENSRS_WEB_LISTEN_ADDRESS', ':19877').rpartition(':')[2]; urllib.request.build_opener(urllib.request.ProxyHandler({})).open(f'http://127.0.0.1:{port}/-/healthy', timeout=4)"]

ENTRYPOINT ["opensrs-migration-exporter"]
