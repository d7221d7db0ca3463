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
cache=${TJO_CACHE:-$HOME/.cache/trainingjob-operator}
key=$(cat "$here/kueue/go.mod" "$here/kueue/go.sum" "$here/kueue/tools.go" | sha256sum | cut -c1-12)
out="$cache/kueue-$KUEUE_VERSION-$key"

if [[ -x "$out/kueue" && -f "$out/webhook/manifests.yaml" && -d "$out/crds" ]]; then
  echo "kueue: reusing $out" >&2
  echo "$out"
  exit 0
fi

command -v go >/dev/null || { echo "go is required to build Kueue (apt-get install golang or see go.dev)" >&2; exit 2; }
rm -rf "$out.part" && mkdir -p "$out.part/crds" "$out.part/webhook"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
start=$(date +%s)
echo "building Kueue $KUEUE_VERSION into $out (cold build, takes a while)" >&2
ldflags="-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$KUEUE_VERSION"
(cd "$here/kueue" && go build -trimpath -ldflags "$ldflags" -o "$out.part/kueue" sigs.k8s.io/kueue/cmd/kueue)
src=$(cd "$here/kueue" && go list -m -f '{{.Dir}}' sigs.k8s.io/kueue)
cp "$src"/config/components/crd/bases/*.yaml "$out.part/crds/"
cp "$src/config/components/webhook/manifests.yaml" "$out.part/webhook/"
chmod -R u+w "$out.part"
rm -rf "$out" && mv "$out.part" "$out"
echo "kueue built in $(( $(date +%s) - start ))s: $out" >&2
echo "$out"
