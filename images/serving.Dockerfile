# syntax=docker/dockerfile:1
# The serving image: Vertex AI's custom container for lightgbm model versions
# (`python -m app.serving`; AIP_HTTP_PORT, AIP_HEALTH_ROUTE, AIP_PREDICT_ROUTE and
# AIP_STORAGE_URI come from Vertex AI). Built from a staged context holding exactly
# images.SERVING.context_files() (the import closure of app/serving plus the pinned
# requirements): components/container_images.py stages it, or
# `python -m images stage serving DIR`.

# python:3.11-slim's multi-arch index, pinned by digest (a tag moves under us). Bump it
# deliberately; the requirements' markers assume CPython 3.11 on linux/amd64.
ARG PYTHON_BASE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

FROM ${PYTHON_BASE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
COPY images/serving-requirements.txt /tmp/
# Wheels only, every one hash-checked against uv.lock; then pip leaves the venv.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-hashes --no-deps --only-binary=:all: \
        -r /tmp/serving-requirements.txt \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/pip uninstall --yes pip

FROM ${PYTHON_BASE}
# LightGBM's library links the system OpenMP runtime; the slim image lacks it.
RUN apt-get update \
 && apt-get install --yes --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && python -m pip uninstall --yes pip setuptools wheel \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin serving
COPY --from=builder /opt/venv /opt/venv
COPY app/ /opt/fraud-mlops/app/
RUN python -m compileall -q /opt/fraud-mlops/app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/fraud-mlops \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AIP_HTTP_PORT=8080
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080
# Exec form: the server is PID 1 and gets Vertex AI's SIGTERM itself.
ENTRYPOINT ["python", "-m", "app.serving"]
