# Operator image: docker build -t ghcr.io/trainingjob-operator/operator:0.1.0 .
# Without a registry, `make images` builds it on a Debian base of the project's own
# (--build-arg BASE_IMAGE=...; see docs/local-cluster.md, "Images").
# It installs the `operator` extra exactly as CI does (pip install '.[operator]'), in three stages
# so a code-only change rebuilds in seconds: the requirements (from pyproject.toml only), the
# project's wheel, and the image (its dependency layer, then the small code layer).
ARG BASE_IMAGE=python:3.11-slim
# The last stage's base: `make images` passes the project's runtime base (hack/images/runtime: the base
# without its package manager); with a registry, python:3.11-slim.
ARG RUNTIME_IMAGE=python:3.11-slim

# ---- 1. the requirements of the `operator` extra, read from pyproject.toml in a stage of their own,
# so an edit elsewhere in pyproject.toml (a linter setting, a test marker) leaves the image's
# dependency layer cached.
FROM ${BASE_IMAGE} AS requirements
COPY pyproject.toml hack/images/requirements.py /build/
RUN python3 /build/requirements.py /build/pyproject.toml operator >/build/requirements.txt

# ---- 2. the project as a wheel
FROM ${BASE_IMAGE} AS wheel
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
# pip's own wheel too: the image's code layer runs pip from it (python pip.whl/pip), so the image
# never has pip installed.
RUN python3 -m venv /opt/build && /opt/build/bin/pip install -q 'setuptools>=69' wheel \
 && /opt/build/bin/pip download -q --no-deps -d /wheels pip
COPY pyproject.toml README.md /src/
COPY operator/trainingjob_operator /src/operator/trainingjob_operator
COPY trainer_image/forecast_trainer /src/trainer_image/forecast_trainer
RUN /opt/build/bin/pip wheel -q --no-deps --no-build-isolation -w /wheels /src

# ---- 3. the dependencies, on the full base (stripping needs binutils from apt)
FROM ${BASE_IMAGE} AS dependencies
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
# Non-root (the Deployment runs it as 65532 with a read-only root). The name must be new on
# Debian, whose base-passwd already has a group `operator` (gid 37: `groupadd operator` failed);
# written directly, so bases without useradd (a minbase rootfs) work too.
RUN echo 'nonroot:x:65532:' >>/etc/group \
 && echo 'nonroot:x:65532:65532:nonroot:/nonexistent:/usr/sbin/nologin' >>/etc/passwd
# The dependency layer: rebuilt only when the requirements change. The image copies the venv
# from here, so binutils for stripping never reaches it; COPY --from hashes the venv for its cache
# check on every build (+15 s on a loaded machine: docs/local-cluster.md, "Figures").
# A CA bundle for pip (a path inside the build, e.g. one mounted read-only); never stored in the image.
ARG PIP_CERT
COPY --from=requirements /build/requirements.txt /build/
COPY hack/images/prune-venv.sh /build/
# Pruned: kubernetes.aio, the client's asyncio twin (68 MB with its bytecode), which nothing in the
# operator imports (kube.py uses kubernetes.client; kopf has its own aiohttp client). The client's
# generated API and model classes (every resource of every API group: 32 MB of source, mostly
# docstrings) stay as bytecode only (compileall -b: each .pyc where its .py was, which Python
# imports without the source); a traceback through them names the file and line but cannot
# print it. The rest of the client (api_client, rest, config, watch) keeps its source.
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install -q -r /build/requirements.txt \
 && sh /build/prune-venv.sh /opt/venv \
 && k8s=$(echo /opt/venv/lib/python3*/site-packages/kubernetes) \
 && rm -rf "$k8s/aio" \
 && for d in "$k8s/client/api" "$k8s/client/models"; do \
      python3 -m compileall -q -b "$d" && find "$d" -name '*.py' -delete && find "$d" -name __pycache__ -prune -exec rm -rf {} +; \
    done \
 && rm -rf /build
# ---- 4. the image: the runtime base, the dependencies' virtualenv (one layer, rebuilt only when
# they change), then the code layer
FROM ${RUNTIME_IMAGE}
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
# Non-root (the Deployment runs it as 65532 with a read-only root). The name must be new on
# Debian, whose base-passwd already has a group `operator` (gid 37: `groupadd operator` failed);
# written directly, so bases without useradd (a minbase rootfs) work too.
RUN echo 'nonroot:x:65532:' >>/etc/group \
 && echo 'nonroot:x:65532:65532:nonroot:/nonexistent:/usr/sbin/nologin' >>/etc/passwd
COPY --from=dependencies /opt/venv /opt/venv
# The code layer: the project's wheel, installed without dependencies (they are all in the layer
# above) and without the network, by pip run from its wheel (the image keeps no pip).
COPY --from=wheel /wheels /tmp/wheels
RUN python "$(echo /tmp/wheels/pip-*.whl)/pip" install -q --no-deps --no-index /tmp/wheels/trainingjob_operator-*.whl \
 && rm -rf /tmp/wheels
USER 65532:65532
EXPOSE 8080 8081
# The Deployment gives the whole command (`command:`), so this is only the default for `docker run`.
ENTRYPOINT ["kopf", "run", "-m", "trainingjob_operator.main", "--all-namespaces", "--liveness=http://0.0.0.0:8081/healthz"]
