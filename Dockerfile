# syntax=docker/dockerfile:1
# The deepcuts image: the official Airflow image plus our pinned dependencies and code, installed as a
# built wheel (non-editable). Build: docker compose build   (see docs/operations.md)
#
# Two stages: `builder` has the C toolchain (lightfm-next and implicit compile extensions) and turns
# the project and every dependency the base image lacks into wheels; the final image installs those
# wheels offline and carries no compiler, no apt cache, no source tree.
#
# The base image is pinned by its full version tag (Airflow 3.3.2 on Python 3.11). Pin it by digest
# for reproducible builds: `docker buildx imagetools inspect apache/airflow:3.3.2-python3.11` prints
# it; then set AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11@sha256:<digest>.
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11

FROM ${AIRFLOW_IMAGE} AS builder
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
USER airflow
WORKDIR /build
COPY --chown=airflow:0 pyproject.toml constraints.txt README.md ./
COPY --chown=airflow:0 deepcuts ./deepcuts
COPY --chown=airflow:0 pipelines ./pipelines
COPY --chown=airflow:0 models ./models
COPY --chown=airflow:0 sql ./sql
# Same pins as `make install`; the base image's Airflow is the pinned version, so nothing moves.
RUN pip wheel --no-cache-dir -c constraints.txt --wheel-dir /build/wheels . \
 && cp constraints.txt /build/wheels/constraints.txt

FROM ${AIRFLOW_IMAGE}
# The lake's mount point, owned by the airflow user, so a named volume mounted there is writable
# without running anything as root (docker-compose's airflow-init runs as airflow).
USER root
RUN install -d -o airflow -g 0 -m 2775 /opt/deepcuts /opt/deepcuts/lake
USER airflow
# Offline from the builder's wheels only (no compiler here), the project itself as a wheel.
RUN --mount=type=bind,from=builder,source=/build/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels -c /wheels/constraints.txt deepcuts \
 && python -c "import lightfm, great_expectations, deepcuts, pipelines; print('deepcuts image ready')"
COPY --chown=airflow:0 dags /opt/airflow/dags
