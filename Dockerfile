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
# the databases in the volume. Relative storage paths in the configuration
# would resolve next to the configuration file, in /etc/facmon, which the
# service cannot write.
ENV FACMON_API__HOST=0.0.0.0 \
    FACMON_STORAGE__STATE_URL=sqlite:////var/lib/facmon/state.db \
    FACMON_STORAGE__TELEMETRY__PATH=/var/lib/facmon/telemetry.db

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

# Default facility configuration; replace it with a bind mount of your own.
COPY --chmod=0644 examples/facility.yaml /etc/facmon/facility.yaml

# SQLite state and telemetry live here; a volume keeps them across container
# replacement.
WORKDIR /var/lib/facmon
VOLUME ["/var/lib/facmon"]

USER facmon

EXPOSE 8080

# slim images have no curl; urlopen raises on connection errors and on non-2xx
# answers, which makes python exit non-zero.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]

ENTRYPOINT ["facmon"]
CMD ["serve", "--config", "/etc/facmon/facility.yaml"]
