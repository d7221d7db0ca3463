#!/usr/bin/env bash
# The main job, end to end, on a fresh machine (README's first command, `make demo`):
#   installs Python dependencies and the node's packages, builds or reuses the images, the
#   local Kubernetes control plane, kubelet and CoreDNS, starts the cluster with its real node
#   (kubelet + containerd, the images imported), starts PostgreSQL where pods reach the host,
#   loads 3 years of sample sales for 20 products, deploys the CRDs and the operator from its
#   image (manifests/overlays/kind: 2 replicas, leader election), applies a TrainingJob whose
#   trainer pods run the trainer image, shows progress until it is Complete, and prints a
#   report. Everything stays up afterwards; the last lines say how to explore and tear it down.
#   Exit status: 0 only when the TrainingJob Succeeded (and its results could be read back);
#   non-zero when it Failed, the operator did not roll out, or it did not finish within
#   TJO_DEMO_TIMEOUT seconds (default 1800).
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

step "Container images: base, operator, trainer, PostgreSQL, ... (built once, then only what changed)"
bash hack/node-packages.sh
TJO_IMAGES_DIR=$(bash hack/build-images.sh | tail -n1)  # not `export X=$(...)`: that would hide a failed build
export TJO_IMAGES_DIR
echo "images in $TJO_IMAGES_DIR"

step "Kubernetes binaries: control plane, kubelet, kube-proxy; CoreDNS (built once, then cached)"
TJO_K8S_BIN=$(bash hack/build-binaries.sh | tail -n1)
TJO_COREDNS_BIN=$(bash hack/build-coredns.sh | tail -n1)
export TJO_K8S_BIN TJO_COREDNS_BIN

step "Local cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, the real node"
export TJO_CLUSTER_DIR=${TJO_CLUSTER_DIR:-$HOME/.cache/trainingjob-operator/demo-cluster}
# a shared 2-CPU machine under load can take minutes to bring the controller-manager up
up=$(PYTHONPATH=hack python -m localcluster up --timeout "${TJO_CLUSTER_TIMEOUT:-300}") \
  || { echo "the local cluster did not start (logs: $TJO_CLUSTER_DIR/logs)" >&2; exit 1; }
sed '$d' <<<"$up"
eval "$(tail -n1 <<<"$up")"
echo "KUBECONFIG=$KUBECONFIG"
kubectl get nodes -o wide
# Pods reach the host at the host side of the node's link, where the API server listens too.
host_ip=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}' | sed -E 's#https://([^:]+):.*#\1#')

step "PostgreSQL on 127.0.0.1 and $host_ip (where pods reach it)"
export TJO_PG_PORT=${TJO_PG_PORT:-55433} TJO_PG_DIR=${TJO_PG_DIR:-/tmp/tjo-demo-pg} TJO_PG_LISTEN=$host_ip
eval "$(bash hack/postgres.sh start | tail -n1)"
if ! /usr/lib/postgresql/15/bin/pg_isready -q -h "$host_ip" -p "$TJO_PG_PORT" -t 5; then
  # an earlier demo's server, started for another host address: again, with this one (data kept)
  bash hack/postgres.sh down && bash hack/postgres.sh up
fi
dsn=$TJO_TEST_DSN
pod_dsn=${dsn/@127.0.0.1:/@$host_ip:}

step "Sample data: 20 products x 3 years of daily bakery sales into PostgreSQL"
forecast-trainer migrate --output-dsn "$dsn" >/dev/null
forecast-trainer sample-data --products 20 --days 1095 --seed 42 --dsn "$dsn" --table sales
products=$(psql "$dsn" -AtX -c "select json_agg(p order by p) from (select distinct product_id p from sales) s")

step "CRDs + the operator from its image (kubectl apply -k manifests/overlays/kind, as on kind)"
kubectl apply -k manifests/overlays/kind >/dev/null
kubectl wait --for=condition=Established crd/trainingjobs.training.forecast.dev --timeout=60s >/dev/null
operator_ready=1
kubectl -n trainingjob-system rollout status deploy/trainingjob-operator --timeout=300s || operator_ready=0
kubectl -n trainingjob-system get pods -o wide

step "TrainingJob bakery-daily: 20 products, PostgreSQL in and out"
kubectl create namespace forecast-demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl label namespace forecast-demo pod-security.kubernetes.io/enforce=restricted --overwrite >/dev/null
kubectl -n forecast-demo create secret generic sales-db --from-literal=dsn="$pod_dsn" \
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
while (( operator_ready )); do
  line=$(kubectl -n forecast-demo get tj bakery-daily --no-headers 2>/dev/null || true)
  key=$(awk '{print $2, $3, $4, $5}' <<<"$line")   # print on change of phase/progress/active/failed
  [[ "$key" != "$last" ]] && { echo "$line"; last=$key; }
  phase=$(kubectl -n forecast-demo get tj bakery-daily -o jsonpath='{.status.phase}' 2>/dev/null || true)
  [[ "$phase" == Succeeded || "$phase" == Failed ]] && break
  if (( $(date +%s) > deadline )); then
    echo "gave up waiting after ${TJO_DEMO_TIMEOUT:-1800}s (TJO_DEMO_TIMEOUT)" >&2
    break
  fi
  sleep 1
done
kubectl -n forecast-demo wait --for=condition=Complete tj/bakery-daily --timeout=10s >/dev/null || true
kubectl -n trainingjob-system logs deploy/trainingjob-operator --all-containers --tail=-1 >"$out/operator.log" 2>&1 || true
(( operator_ready )) || { echo "the operator did not roll out; its log: $out/operator.log" >&2; tail -n 20 "$out/operator.log" >&2; }

step "Report"
# The report's exit status is the demo's: non-zero unless the TrainingJob Succeeded.
rc=0
python hack/demo_report.py --dsn "$dsn" --namespace forecast-demo --name bakery-daily --out "$out" || rc=$?
echo
echo "demo finished in $(( $(date +%s) - started ))s (exit status $rc)"
cat <<TXT

Explore:   export KUBECONFIG=$KUBECONFIG
           kubectl -n forecast-demo describe tj bakery-daily
           kubectl -n forecast-demo get pods -o wide          # the trainer pods: real containers
           kubectl -n forecast-demo logs -l training.forecast.dev/trainingjob=bakery-daily --tail=5
           kubectl -n trainingjob-system logs deploy/trainingjob-operator
           kubectl -n forecast-demo scale tj/bakery-daily --replicas=8
Tear down: TJO_CLUSTER_DIR=$TJO_CLUSTER_DIR make cluster-down
           TJO_PG_PORT=$TJO_PG_PORT TJO_PG_DIR=$TJO_PG_DIR bash hack/postgres.sh stop
TXT
exit "$rc"
