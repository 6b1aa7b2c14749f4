# The deepcuts image: the official Airflow image plus our pinned dependencies and code.
# Build: docker compose build   (see docs/operations.md)
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}

# lightfm-next and implicit build C extensions.
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
USER airflow

WORKDIR /opt/deepcuts
COPY --chown=airflow:0 pyproject.toml constraints.txt README.md ./
COPY --chown=airflow:0 deepcuts ./deepcuts
COPY --chown=airflow:0 pipelines ./pipelines
COPY --chown=airflow:0 models ./models
COPY --chown=airflow:0 sql ./sql
# Same pins as `make install`; the base image's Airflow is the pinned version, so nothing moves.
RUN pip install --no-cache-dir -c constraints.txt . \
 && python -c "import lightfm, great_expectations, deepcuts; print('deepcuts image ready')"
COPY --chown=airflow:0 dags /opt/airflow/dags
