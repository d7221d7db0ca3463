#!/usr/bin/env bash
# The project's whole test run on a fresh machine: installs Python dependencies and the real
# node's Debian packages, builds (or reuses) the local Kubernetes control plane, kubelet,
# kube-proxy, CoreDNS and Kueue, starts a throw-away PostgreSQL on loopback, runs lint, types
# and every test suite (the e2e ones on the real node), then stops what it started. Extra
# arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/venv.sh
# The real node's Debian packages (containerd, runc, podman, mmdebstrap, ...), then the project's
# images (built once, then only what changed): the local cluster imports them from TJO_IMAGES_DIR,
# and tests/images runs them.
bash hack/node-packages.sh
TJO_IMAGES_DIR=$(bash hack/build-images.sh | tail -n1)  # not `export X=$(...)`: that would hide a failed build
export TJO_IMAGES_DIR
export TJO_K8S_BIN=$(bash hack/build-binaries.sh | tail -n1)
export TJO_COREDNS_BIN=$(bash hack/build-coredns.sh | tail -n1)
# promtool (+ metricnames) for the monitoring overlay's tests (tests/unit/monitoring).
export TJO_PROMTOOL=$(bash hack/build-promtool.sh | tail -n1)
# Kueue (manager + its CRDs and webhook manifests) for tests/e2e/operator/test_kueue.py.
export TJO_KUEUE_BIN=$(bash hack/build-kueue.sh | tail -n1)
# kstatus (sigs.k8s.io/cli-utils), for the e2e tests of what GitOps tools read from status.
export TJO_KSTATUS=$(bash hack/build-kstatus.sh | tail -n1)/kstatus
# Stop PostgreSQL at exit only when this run started it (another suite may be using it): the
# server records who started it (TJO_PG_OWNER), and `stop` with another owner leaves it running.
pg_owner="hack/test.sh:$$:$(date +%s%N)"
pg_env=$(TJO_PG_OWNER=$pg_owner bash hack/postgres.sh start | tail -n1) || { echo "PostgreSQL did not start" >&2; exit 1; }
trap 'TJO_PG_OWNER=$pg_owner bash hack/postgres.sh stop' EXIT
eval "$pg_env"
export PATH=$PWD/.venv/bin:$PATH
echo "== ruff"; ruff check .
echo "== mypy"; mypy operator/trainingjob_operator trainer_image/forecast_trainer hack/localcluster hack/operator_harness.py hack/pg_harness.py
echo "== pytest"
set +e
pytest -p no:cacheprovider "$@"
rc=$?
set -e
# 5 = no tests collected: a run that tested nothing is a failure here.
if [[ $rc -eq 5 ]]; then echo "pytest collected no tests" >&2; exit 1; fi
exit $rc
