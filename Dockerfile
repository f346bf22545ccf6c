# syntax=docker/dockerfile:1

# Production image for facmon.
#
#   docker build -t facmon .
#   docker build --build-arg FACMON_EXTRAS=postgres -t facmon .   # with the PostgreSQL driver
#
# The builder stage turns the source tree into wheels; the final stage
# installs them, so the image holds the installed package only, not the
# sources, the build tools or pip's caches.

FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN pip install build

WORKDIR /src
COPY . .

# Build the wheel from pyproject.toml as a release would, then collect the
# wheels of all runtime dependencies next to it, so that the final stage
# installs from this set only (--no-index).
ARG FACMON_EXTRAS=""
RUN python -m build --wheel --outdir /dist . \
 && pip wheel --wheel-dir /wheels \
        "$(echo /dist/*.whl)${FACMON_EXTRAS:+[$FACMON_EXTRAS]}"


FROM python:3.11-slim

ARG FACMON_EXTRAS=""

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Overrides of the facility configuration that only make sense in a
# container: listen on all interfaces so the published port works, and keep
# every file facmon writes in the volume (the SQLite state and telemetry
# stores, when used, and the spool, where readings wait while the telemetry
# store is down). Relative storage paths in the configuration would resolve
# next to the configuration file, in /etc/facmon, which is read-only and not
# facmon's: the service would not start. tests/deploy/test_compose.py checks
# that each of these paths is on a volume.
ENV FACMON_API__HOST=0.0.0.0 \
    FACMON_STORAGE__STATE_URL=sqlite:////var/lib/facmon/state.db \
    FACMON_STORAGE__TELEMETRY__PATH=/var/lib/facmon/telemetry.db \
    FACMON_STORAGE__SPOOL__PATH=/var/lib/facmon/spool.db

# Fixed uid/gid so that a host directory bind-mounted over /var/lib/facmon
# can be given the right owner (chown 10001:10001).
RUN groupadd --system --gid 10001 facmon \
 && useradd --system --uid 10001 --gid facmon \
        --home-dir /var/lib/facmon --no-create-home \
        --shell /usr/sbin/nologin facmon \
 && install -d -o facmon -g facmon -m 0750 /var/lib/facmon

# The wheels are bind-mounted from the builder instead of copied, so they do
# not remain in a layer of the final image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels \
        "facility-monitor${FACMON_EXTRAS:+[$FACMON_EXTRAS]}"

# `facmon` on PATH is this wrapper, for the service, `docker compose exec`
# and `docker compose run` alike. A secret whose value is in a file, such as
# the InfluxDB token that the influxdb service writes into a shared volume
# or a Docker secret, is named by FACMON_<KEY>_FILE, for the settings whose
# name ends in PASSWORD, TOKEN or SECRET (a setting that is itself a file's
# name is left alone). The wrapper sets FACMON_<KEY> from the file, unless it
# is set already, and removes FACMON_<KEY>_FILE, which the configuration would
# refuse as an unknown key.
COPY --chmod=0755 <<"EOF" /usr/local/lib/facmon/bin/facmon
#!/bin/sh
set -eu
for name in $(env | sed -n -E 's/^(FACMON_[A-Za-z0-9_]*(PASSWORD|TOKEN|SECRET))_FILE=.*/\1/p'); do
    file=$(printenv "${name}_FILE")
    unset "${name}_FILE"
    if [ -n "$(printenv "$name" || true)" ]; then
        continue
    fi
    if [ ! -r "$file" ] || [ ! -s "$file" ]; then
        echo "facmon: error: ${name}_FILE: cannot read $file (or it is empty)" >&2
        exit 1
    fi
    value=$(cat "$file")
    export "$name=$value"
done
exec /usr/local/bin/facmon "$@"
EOF
ENV PATH=/usr/local/lib/facmon/bin:$PATH

# Default facility configuration; replace it with a bind mount of your own.
COPY --chmod=0644 examples/facility.yaml /etc/facmon/facility.yaml

# The SQLite stores and the spool live here; a volume keeps them across
# container replacement.
WORKDIR /var/lib/facmon
VOLUME ["/var/lib/facmon"]

USER facmon

EXPOSE 8080

# Readiness, not liveness: /readyz answers 503 while the broker, a store or
# ingest is not ready, and needs no token. slim images have no curl; urlopen
# raises on connection errors and on non-2xx answers, which makes python exit
# non-zero.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=4)"]

ENTRYPOINT ["facmon"]
CMD ["serve", "--config", "/etc/facmon/facility.yaml"]
