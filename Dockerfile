# The official Airflow image with airflow-provider-runners and its runtime extras (target
# `runtime`, used by every Airflow service of docker-compose.yaml). No test tool (moto, ruff,
# mypy, playwright, pytest plugins) goes into it.
# Keep AIRFLOW_VERSION equal to the apache-airflow pin in requirements/lock.txt (a test checks it).
# Versions are held to requirements/lock.txt, used as pip constraints the way Airflow's own
# constraints file is meant to be used: only what the requested extras need is installed, at the
# versions the test suite ran against. tests/integration/test_docker_image.py runs these exact pip
# lines in a fresh venv and imports every backend.
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION} AS runtime
ARG AIRFLOW_VERSION

COPY --chown=airflow:root pyproject.toml README.md /opt/airflow/provider/
COPY --chown=airflow:root requirements/lock.txt /opt/airflow/provider/requirements/
COPY --chown=airflow:root airflow_provider_runners /opt/airflow/provider/airflow_provider_runners
# Installing apache-airflow at the image's own version keeps pip from up- or downgrading it.
RUN pip install --no-cache-dir -c /opt/airflow/provider/requirements/lock.txt "apache-airflow==${AIRFLOW_VERSION}" "/opt/airflow/provider[google,amazon,kubernetes,labgrid,examples]"

# Local stand-ins for docker-compose.yaml only (never deploy this target): moto's server with the
# test suite's SSM agent stand-in for the AWS examples (scripts/moto-standin.py) and its
# Kubernetes API stand-in (scripts/kube-standin.py).
FROM runtime AS standins
COPY --chown=airflow:root tests/__init__.py /opt/airflow/standins/tests/
COPY --chown=airflow:root tests/fakes/__init__.py tests/fakes/aws.py tests/fakes/kubelet.py tests/fakes/kubernetes.py /opt/airflow/standins/tests/fakes/
COPY --chown=airflow:root scripts/moto-standin.py scripts/kube-standin.py scripts/compose-aws-init.py /opt/airflow/standins/scripts/
RUN pip install --no-cache-dir -c /opt/airflow/provider/requirements/lock.txt "moto[server]" kmock
