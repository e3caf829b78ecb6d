# The official Airflow image with airflow-provider-runners installed (used by docker-compose.yaml).
# Keep AIRFLOW_VERSION equal to the apache-airflow pin in requirements/lock.txt (a test checks it).
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}
ARG AIRFLOW_VERSION

COPY --chown=airflow:root pyproject.toml README.md /opt/airflow/provider/
COPY --chown=airflow:root airflow_provider_runners /opt/airflow/provider/airflow_provider_runners
# Installing apache-airflow at the image's own version keeps pip from up- or downgrading it.
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" "/opt/airflow/provider[dev,labgrid]"
