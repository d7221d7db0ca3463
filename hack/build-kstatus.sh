#!/usr/bin/env bash
# Build (or reuse) hack/kstatus: a small program that prints what kstatus
# (sigs.k8s.io/cli-utils/pkg/kstatus, the status library Argo CD, Flux and kpt
# build on) computes for a live object. Pinned in hack/kstatus/go.mod and go.sum;
# the binary is cached outside the repository in
#   ${TJO_CACHE:-~/.cache/trainingjob-operator}/kstatus-<cli-utils version>-<inputs hash>/
# and the directory is printed on the last line of stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
VERSION=$(awk '$1=="sigs.k8s.io/cli-utils"{print $2}' "$here/kstatus/go.mod")
cache=${TJO_CACHE:-$HOME/.cache/trainingjob-operator}
key=$(cat "$here/kstatus/go.mod" "$here/kstatus/go.sum" "$here/kstatus/main.go" | sha256sum | cut -c1-12)
out="$cache/kstatus-$VERSION-$key"

if [[ -x "$out/kstatus" ]]; then
  echo "kstatus: reusing $out" >&2
  echo "$out"
  exit 0
fi

command -v go >/dev/null || { echo "go is required to build hack/kstatus (apt-get install golang or see go.dev)" >&2; exit 2; }
mkdir -p "$out.part"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
start=$(date +%s)
(cd "$here/kstatus" && go build -trimpath -ldflags "-s -w" -o "$out.part/kstatus" .)
rm -rf "$out" && mv "$out.part" "$out"
echo "kstatus ($VERSION) built in $(( $(date +%s) - start ))s: $out" >&2
echo "$out"
