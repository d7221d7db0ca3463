#!/usr/bin/env bash
# The main job, end to end, on a fresh machine (README's first command, `make demo`):
#   installs Python dependencies, builds or reuses the local Kubernetes control plane,
#   starts it with the node agent, starts PostgreSQL, loads 3 years of sample sales for
#   20 products, applies the CRD + operator manifests, runs the operator as a local process
#   with its ServiceAccount's credentials, applies a TrainingJob, shows progress until it
#   is Complete, and prints a report. Everything stays up afterwards; the last lines say
#   how to tear it down. Exit status: 0 only when the TrainingJob Succeeded (and its results
#   could be read back); non-zero when it Failed, the operator died, or it did not finish
#   within TJO_DEMO_TIMEOUT seconds (default 1800).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
started=$(date +%s)
out=${TJO_DEMO_DIR:-$root/demo-output}
mkdir -p "$out"
step() { printf '\n== %s (%ss)\n' "$*" "$(( $(date +%s) - started ))"; }

step "Python environment"
bash hack/venv.sh
export PATH=$root/.venv/bin:$PATH

step "Container images: base, operator, trainer, PostgreSQL (built once, then only what changed)"
bash hack/node-packages.sh
TJO_IMAGES_DIR=$(bash hack/build-images.sh | tail -n1)  # not `export X=$(...)`: that would hide a failed build
export TJO_IMAGES_DIR
echo "images in $TJO_IMAGES_DIR"

step "Kubernetes control plane binaries (built once, then cached)"
export TJO_K8S_BIN=$(bash hack/build-binaries.sh | tail -n1)

step "PostgreSQL on 127.0.0.1"
export TJO_PG_PORT=${TJO_PG_PORT:-55433} TJO_PG_DIR=${TJO_PG_DIR:-/tmp/tjo-demo-pg}
eval "$(bash hack/postgres.sh start | tail -n1)"
dsn=$TJO_TEST_DSN

step "Local cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, node agent"
export TJO_CLUSTER_DIR=${TJO_CLUSTER_DIR:-$HOME/.cache/trainingjob-operator/demo-cluster}
# The node agent still, this round: the trainer pods need the trainer image on the real node, and
# PostgreSQL must listen where pods reach the host (docs/local-cluster.md, "What still runs on the node agent").
export TJO_NODE=${TJO_NODE:-agent}
eval "$(PYTHONPATH=hack python -m localcluster up | tail -n1)"
echo "KUBECONFIG=$KUBECONFIG"

step "Sample data: 20 products x 3 years of daily bakery sales into PostgreSQL"
forecast-trainer migrate --output-dsn "$dsn" >/dev/null
forecast-trainer sample-data --products 20 --days 1095 --seed 42 --dsn "$dsn" --table sales
products=$(psql "$dsn" -AtX -c "select json_agg(p order by p) from (select distinct product_id p from sales) s")

step "CRD + operator manifests (kubectl apply -k manifests/)"
kubectl apply -k manifests/ >/dev/null
kubectl wait --for=condition=Established crd/trainingjobs.training.forecast.dev --timeout=60s >/dev/null
# On this machine there is no container engine: the operator runs as a local process,
# authenticated as its ServiceAccount (so its RBAC is what a real deployment gets).
kubectl -n trainingjob-system scale deploy/trainingjob-operator --replicas=0 >/dev/null
token=$(kubectl -n trainingjob-system create token trainingjob-operator --duration=24h)
sa_kubeconfig=$out/operator.kubeconfig
python - "$KUBECONFIG" "$sa_kubeconfig" "$token" <<'PY'
import sys, yaml
src, dst, token = sys.argv[1:]
cfg = yaml.safe_load(open(src))
cfg["users"] = [{"name": "trainingjob-operator", "user": {"token": token}}]
for ctx in cfg["contexts"]:
    ctx["context"]["user"] = "trainingjob-operator"
yaml.safe_dump(cfg, open(dst, "w"))
PY
# Stop the operator of an earlier demo run (its pid file), never anyone else's.
if [[ -f $out/operator.pid ]]; then
  old=$(cat "$out/operator.pid")
  if [[ -n $old ]] && tr '\0' ' ' <"/proc/$old/cmdline" 2>/dev/null | grep -q "trainingjob_operator.main"; then
    kill "$old" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$old" 2>/dev/null || break; sleep 0.2; done
  fi
fi
KUBECONFIG=$sa_kubeconfig PYTHONPATH=$root/operator TJO_METRICS_PORT=${TJO_METRICS_PORT:-18080} \
  TJO_LEADER_ELECTION_NAMESPACE=trainingjob-system \
  nohup kopf run -m trainingjob_operator.main --all-namespaces --liveness=http://127.0.0.1:18081/healthz \
  > "$out/operator.log" 2>&1 &
echo $! > "$out/operator.pid"
echo "operator pid $(cat "$out/operator.pid"), log $out/operator.log"

step "TrainingJob bakery-daily: 20 products, PostgreSQL in and out"
kubectl create namespace forecast-demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl label namespace forecast-demo pod-security.kubernetes.io/enforce=restricted --overwrite >/dev/null
kubectl -n forecast-demo create secret generic sales-db --from-literal=dsn="$dsn" \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n forecast-demo delete tj bakery-daily --ignore-not-found --wait=true >/dev/null
cat <<YAML | kubectl -n forecast-demo apply -f -
apiVersion: training.forecast.dev/v1alpha1
kind: TrainingJob
metadata:
  name: bakery-daily
spec:
  products: $products
  data:
    postgres:
      secretRef: {name: sales-db, key: dsn}
      table: sales
  output:
    postgres: {schema: public}
  forecast: {horizonDays: 30}
  parallelism: 4
  maxFailedProducts: "10%"
YAML

step "Progress (kubectl get tj -w)"
kubectl -n forecast-demo get tj bakery-daily 2>/dev/null | head -1 || true
last=""
deadline=$(( $(date +%s) + ${TJO_DEMO_TIMEOUT:-1800} ))
while true; do
  line=$(kubectl -n forecast-demo get tj bakery-daily --no-headers 2>/dev/null || true)
  key=$(awk '{print $2, $3, $4, $5}' <<<"$line")   # print on change of phase/progress/active/failed
  [[ "$key" != "$last" ]] && { echo "$line"; last=$key; }
  phase=$(kubectl -n forecast-demo get tj bakery-daily -o jsonpath='{.status.phase}' 2>/dev/null || true)
  [[ "$phase" == Succeeded || "$phase" == Failed ]] && break
  if ! kill -0 "$(cat "$out/operator.pid")" 2>/dev/null; then
    echo "the operator exited; last lines of $out/operator.log:" >&2
    tail -n 20 "$out/operator.log" >&2
    break
  fi
  if (( $(date +%s) > deadline )); then
    echo "gave up waiting after ${TJO_DEMO_TIMEOUT:-1800}s (TJO_DEMO_TIMEOUT)" >&2
    break
  fi
  sleep 1
done
kubectl -n forecast-demo wait --for=condition=Complete tj/bakery-daily --timeout=10s >/dev/null || true

step "Report"
# The report's exit status is the demo's: non-zero unless the TrainingJob Succeeded.
rc=0
python hack/demo_report.py --dsn "$dsn" --namespace forecast-demo --name bakery-daily --out "$out" || rc=$?
echo
echo "demo finished in $(( $(date +%s) - started ))s (exit status $rc)"
cat <<TXT

Explore:   export KUBECONFIG=$KUBECONFIG
           kubectl -n forecast-demo describe tj bakery-daily
           kubectl -n forecast-demo scale tj/bakery-daily --replicas=8
Tear down: kill \$(cat $out/operator.pid); TJO_CLUSTER_DIR=$TJO_CLUSTER_DIR make cluster-down
           TJO_PG_PORT=$TJO_PG_PORT TJO_PG_DIR=$TJO_PG_DIR bash hack/postgres.sh stop
TXT
exit "$rc"
