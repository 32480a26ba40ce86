# syntax=docker/dockerfile:1
# The trainer image: every Vertex AI Pipelines step runs on it (KFP lightweight components
# with install_kfp_package=False: KFP's executor is installed here, nothing at run time).
# Built from a staged context holding exactly images.TRAINER.context_files() (the import
# closure of app/pipeline/steps/* and app/backends/gcp, plus the pinned requirements):
# components/container_images.py stages it, or `python -m images stage trainer DIR`.

# python:3.11-slim's multi-arch index, pinned by digest (a tag moves under us). Bump it
# deliberately; the requirements' markers assume CPython 3.11 on linux/amd64.
ARG PYTHON_BASE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

FROM ${PYTHON_BASE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
COPY images/trainer-build-requirements.txt images/trainer-requirements.txt /tmp/
# Every artifact is hash-checked against uv.lock. The build backend goes in first so the
# one sdist-only package (kfp-server-api) builds with it (--no-build-isolation), not with
# an unpinned setuptools fetched on the fly; then the backend and pip leave the venv.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-hashes --no-deps -r /tmp/trainer-build-requirements.txt \
 && /opt/venv/bin/pip install --require-hashes --no-deps --no-build-isolation \
        -r /tmp/trainer-requirements.txt \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/pip uninstall --yes setuptools pip

FROM ${PYTHON_BASE}
# LightGBM's library links the system OpenMP runtime; the slim image lacks it.
RUN apt-get update \
 && apt-get install --yes --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && python -m pip uninstall --yes pip setuptools wheel \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin trainer
COPY --from=builder /opt/venv /opt/venv
COPY app/ /opt/fraud-mlops/app/
# Bytecode compiled now, as root: the code is read-only to the user at run time.
RUN python -m compileall -q /opt/fraud-mlops/app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/fraud-mlops \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib
WORKDIR /tmp
USER 10001:10001
