# syntax=docker/dockerfile:1.7
# One image for every fleetstream process role (adr/0005, adr/0090):
#   docker run IMAGE run gateway | run streams | run sink | connector run KIND --config FILE
# Multi-stage: wheels are built in a throw-away stage; the runtime stage has no compiler, runs as an
# unprivileged user and keeps its state under /var/lib/fleetstream (a volume / emptyDir).
# Not built on the development machine (no Docker engine there): tests/ops/test_container.py checks it
# statically; .github/workflows/images.yml builds, scans and publishes it.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY fleetstream ./fleetstream
COPY schemas ./schemas
COPY runtime ./runtime
COPY connectors ./connectors
COPY streams ./streams
COPY sinks ./sinks
COPY gateway ./gateway
RUN pip wheel --wheel-dir /wheels ".[modbus,opcua,coap,graphql]"

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="fleetstream" \
      org.opencontainers.image.description="Kafka-native multi-tenant IoT platform: gateway, streams, sink, connectors" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FLEETSTREAM_HOST=0.0.0.0 FLEETSTREAM_DATA_DIR=/var/lib/fleetstream FLEETSTREAM_GATEWAY_PORT=8080 \
    FLEETSTREAM_METRICS_PORT=9100 FLEETSTREAM_LOG_FORMAT=json FLEETSTREAM_ENV=prod
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels "fleetstream[modbus,opcua,coap,graphql]" \
    && groupadd --system --gid 10001 fleetstream \
    && useradd --system --uid 10001 --gid fleetstream --home-dir /var/lib/fleetstream --shell /usr/sbin/nologin fleetstream \
    && mkdir -p /var/lib/fleetstream /etc/fleetstream/connectors \
    && chown -R fleetstream:fleetstream /var/lib/fleetstream
WORKDIR /var/lib/fleetstream
USER 10001:10001
EXPOSE 8080 9100-9106
# The gateway's liveness route; other roles override it (compose) or use Kubernetes probes on /metrics.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["fleetstream"]
CMD ["run", "gateway"]
