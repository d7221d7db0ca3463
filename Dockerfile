# Operator image: docker build -t ghcr.io/trainingjob-operator/operator:0.1.0 .
# Installs the `operator` extra exactly as CI does (pip install '.[operator]').
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --gid 65532 operator && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin operator
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY trainer_image/forecast_trainer ./trainer_image/forecast_trainer
RUN pip install '.[operator]' && rm -rf /src
WORKDIR /
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["kopf", "run", "-m", "trainingjob_operator.main", "--all-namespaces", "--liveness=http://0.0.0.0:8081/healthz"]
