#!/usr/bin/env bash
# Build (or reuse) the local control plane binaries: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, and the real node's kubelet and
# kube-proxy, from the Go modules pinned in
# hack/etcd and hack/cluster. Binaries are cached outside the repository in
#   ${TJO_CACHE:-~/.cache/trainingjob-operator}/k8s-<version>-<gosum-hash>/
# and the directory is printed on the last line of stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
K8S_VERSION=$(awk '/^require k8s.io\/kubernetes /{print $3}' "$here/cluster/go.mod")
ETCD_VERSION=$(awk '$1=="require" && $2=="go.etcd.io/etcd/server/v3"{print $3}' "$here/etcd/go.mod")
. "$here/lib/gobuild.sh"
cache_dir k8s "$K8S_VERSION" "$here/cluster/go.mod" "$here/cluster/go.sum" "$here/etcd/go.mod" "$here/etcd/go.sum" \
  "$here/etcd/main.go"
reuse_if etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy
begin_build "the control plane and node (Kubernetes $K8S_VERSION, etcd $ETCD_VERSION)"
(cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$out.part/etcd" .)
echo "building Kubernetes $K8S_VERSION control plane into $out" >&2
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2) -X k8s.io/component-base/version.gitTreeState=clean"
for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
  (cd "$here/cluster" && go build -trimpath -ldflags "$ldflags" -o "$out.part/$b" "k8s.io/kubernetes/cmd/$b")
  echo "  built $b after $(( $(date +%s) - build_start ))s" >&2
done
finish_build "control plane binaries"
