# syntax=docker/dockerfile:1
# sensorium-serve: the gRPC inference server with the embedded default model.
#   docker build -t sensorium-serve .                          # CPU
#   docker build -t sensorium-serve:gpu --build-arg VARIANT=gpu .
ARG VARIANT=cpu
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proto/ proto/
COPY data/ data/
COPY client/ client/
COPY server/ server/
COPY train/ train/
COPY export/ export/
# The embedded default model goes into the wheel (sensorium_models links models/).
COPY models/ models/
COPY embedded/ embedded/
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime-cpu

FROM ${CUDA_IMAGE} AS runtime-gpu
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

# hadolint ignore=DL3006
FROM runtime-${VARIANT} AS runtime
ARG VARIANT
ARG VERSION=0.1.0
ARG SOURCE=https://example.invalid/sensorium-serve
LABEL org.opencontainers.image.title="sensorium-serve" \
      org.opencontainers.image.description="gRPC inference service for predictive models of mouse V1 (Sensorium 2023)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.variant="${VARIANT}"
COPY deploy/docker/install.sh /usr/local/bin/sensorium-install
COPY constraints/ci.txt /tmp/constraints.txt
COPY --from=build /wheels/ /wheels/
RUN sensorium-install "${VARIANT}" /wheels/sensorium_serve-*.whl /opt/venv /tmp/constraints.txt \
    && rm -rf /wheels /tmp/constraints.txt \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin sensorium
COPY --chown=root:root models/ /models/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SENSORIUM_MODEL_REPOSITORY=/models \
    SENSORIUM_HOST=[::] \
    SENSORIUM_PORT=8001 \
    SENSORIUM_METRICS_PORT=8002
USER 10001
EXPOSE 8001 8002
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["sensorium-healthcheck"]
ENTRYPOINT ["sensorium-server"]
