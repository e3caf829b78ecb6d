# The official Airflow image with airflow-provider-runners and its runtime extras (used by
# docker-compose.yaml). No test tool (pytest, moto, ruff, mypy, playwright) goes into it.
# Keep AIRFLOW_VERSION equal to the apache-airflow pin in requirements/lock.txt (a test checks it).
# Versions are held to requirements/lock.txt, used as pip constraints, the way Airflow's own
# constraints file is meant to be used (only what the requested extras need is installed; the
# lock is what the test suite ran against). tests/integration/test_wheel_install.py installs this
# exact pip line into a fresh venv and imports every backend.
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}
ARG AIRFLOW_VERSION

COPY --chown=airflow:root pyproject.toml README.md /opt/airflow/provider/
COPY --chown=airflow:root requirements/lock.txt /opt/airflow/provider/requirements/
COPY --chown=airflow:root airflow_provider_runners /opt/airflow/provider/airflow_provider_runners
# Installing apache-airflow at the image's own version keeps pip from up- or downgrading it.
RUN pip install --no-cache-dir -c /opt/airflow/provider/requirements/lock.txt "apache-airflow==${AIRFLOW_VERSION}" "/opt/airflow/provider[google,amazon,kubernetes,labgrid,examples]"
