#!/usr/bin/env bash
# Build (or reuse) the local control plane binaries: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, from the Go modules pinned in
# hack/etcd and hack/cluster. Binaries are cached outside the repository in
#   ${TJO_CACHE:-~/.cache/trainingjob-operator}/k8s-<version>-<gosum-hash>/
# and the directory is printed on the last line of stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
K8S_VERSION=$(awk '/^require k8s.io\/kubernetes /{print $3}' "$here/cluster/go.mod")
ETCD_VERSION=$(awk '$1=="require" && $2=="go.etcd.io/etcd/server/v3"{print $3}' "$here/etcd/go.mod")
cache=${TJO_CACHE:-$HOME/.cache/trainingjob-operator}
key=$(cat "$here/cluster/go.mod" "$here/cluster/go.sum" "$here/etcd/go.mod" "$here/etcd/go.sum" "$here/etcd/main.go" | sha256sum | cut -c1-12)
out="$cache/k8s-$K8S_VERSION-$key"
bins=(etcd kube-apiserver kube-controller-manager kube-scheduler)

have_all() { for b in "${bins[@]}"; do [[ -x "$out/$b" ]] || return 1; done; }
if have_all; then
  echo "control plane binaries: reusing $out" >&2
  echo "$out"
  exit 0
fi

command -v go >/dev/null || { echo "go is required to build the control plane (apt-get install golang or see go.dev)" >&2; exit 2; }
mkdir -p "$out.part"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
start=$(date +%s)
echo "building etcd $ETCD_VERSION into $out (cold build, takes a while)" >&2
(cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$out.part/etcd" .)
echo "building Kubernetes $K8S_VERSION control plane into $out" >&2
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2) -X k8s.io/component-base/version.gitTreeState=clean"
for b in kube-apiserver kube-controller-manager kube-scheduler; do
  (cd "$here/cluster" && go build -trimpath -ldflags "$ldflags" -o "$out.part/$b" "k8s.io/kubernetes/cmd/$b")
  echo "  built $b after $(( $(date +%s) - start ))s" >&2
done
rm -rf "$out" && mv "$out.part" "$out"
echo "control plane binaries built in $(( $(date +%s) - start ))s: $out" >&2
echo "$out"
