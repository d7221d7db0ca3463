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
. "$here/lib/gobuild.sh"
cache_dir kstatus "$VERSION" "$here/kstatus/go.mod" "$here/kstatus/go.sum" "$here/kstatus/main.go"
reuse_if kstatus
begin_build "kstatus ($VERSION)"
(cd "$here/kstatus" && go build -trimpath -ldflags "-s -w" -o "$out.part/kstatus" .)
finish_build "kstatus ($VERSION)"
