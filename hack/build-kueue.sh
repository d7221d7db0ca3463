#!/usr/bin/env bash
# Build (or reuse) the Kueue manager (sigs.k8s.io/kueue/cmd/kueue) from the Go module
# pinned in hack/kueue, for the e2e tests that queue product Jobs through Kueue.
# The binary, Kueue's CRDs and its webhook manifest (copied from the module cache at
# build time, never committed) are cached outside the repository in
#   ${TJO_CACHE:-~/.cache/trainingjob-operator}/kueue-<version>-<gosum-hash>/
#     kueue  crds/*.yaml  webhook/manifests.yaml
# and the directory is printed on the last line of stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
KUEUE_VERSION=$(awk '/^require sigs.k8s.io\/kueue /{print $3}' "$here/kueue/go.mod")
. "$here/lib/gobuild.sh"
cache_dir kueue "$KUEUE_VERSION" "$here/kueue/go.mod" "$here/kueue/go.sum" "$here/kueue/tools.go"
reuse_if kueue webhook/manifests.yaml crds
begin_build "Kueue $KUEUE_VERSION"
mkdir -p "$out.part/crds" "$out.part/webhook"
ldflags="-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$KUEUE_VERSION"
(cd "$here/kueue" && go build -trimpath -ldflags "$ldflags" -o "$out.part/kueue" sigs.k8s.io/kueue/cmd/kueue)
src=$(cd "$here/kueue" && go list -m -f '{{.Dir}}' sigs.k8s.io/kueue)
cp "$src"/config/components/crd/bases/*.yaml "$out.part/crds/"
cp "$src/config/components/webhook/manifests.yaml" "$out.part/webhook/"
finish_build "Kueue $KUEUE_VERSION"
