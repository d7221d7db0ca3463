#!/usr/bin/env bash
# The project's whole test run on a fresh machine: installs Python dependencies and the real
# node's Debian packages, builds (or reuses) the local Kubernetes control plane, kubelet,
# kube-proxy, CoreDNS and Kueue, starts a throw-away PostgreSQL on loopback, runs lint, types
# and every test suite (the e2e ones on the real node), then stops what it started. Extra
# arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# Python dependencies, the real node's Debian packages and the project's images (the local cluster
# imports them from TJO_IMAGES_DIR, tests/images runs them), the Kubernetes binaries, CoreDNS, and
# for the tests that need them Kueue (tests/e2e/operator/test_kueue.py), kstatus (what GitOps tools
# read from status) and promtool (the monitoring overlay's tests): three chains side by side.
prepared=$(bash hack/prepare.sh test | tail -n1)  # not `eval "$(...)"`: that would hide a failure
eval "$prepared"
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
