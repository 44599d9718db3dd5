# syntax=docker/dockerfile:1
# sensorium-serve: the gRPC inference server with the embedded default model.
#   docker build -t sensorium-serve .                                    # CPU
#   docker build -t sensorium-serve:gpu --build-arg VARIANT=gpu \
#       --build-arg RUNTIME_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 .
#   make image                 # podman/buildah, from a local Debian base (no registry)
# Every stage is named by a literal (buildah cannot resolve a stage named through an
# argument); the runtime's base is an argument instead, and the install script adds
# Python where that base has none (the CUDA image).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG RUNTIME_IMAGE=python:3.11-slim-bookworm

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
RUN python3 -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# hadolint ignore=DL3006
FROM ${RUNTIME_IMAGE} AS runtime
ARG VARIANT=cpu
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
# The user is written into /etc/passwd directly: minimal bases have no useradd.
RUN sensorium-install "${VARIANT}" /wheels/sensorium_serve-*.whl /opt/venv /tmp/constraints.txt \
    && rm -rf /wheels /tmp/constraints.txt \
    && echo "sensorium:x:10001:10001:sensorium-serve:/nonexistent:/usr/sbin/nologin" >> /etc/passwd \
    && echo "sensorium:x:10001:" >> /etc/group
COPY --chown=root:root models/ /models/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SENSORIUM_MODEL_REPOSITORY=/models \
    SENSORIUM_HOST=[::] \
    SENSORIUM_PORT=8001 \
    SENSORIUM_METRICS_PORT=8002 \
    SENSORIUM_HTTP_PORT=8000
USER 10001
EXPOSE 8000 8001 8002
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["sensorium-healthcheck"]
ENTRYPOINT ["sensorium-server"]
