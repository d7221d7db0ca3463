#!/usr/bin/env bash
# Build (or reuse) the local cluster's DNS: CoreDNS from its published Go module
# (github.com/coredns/coredns, pinned in hack/coredns/go.mod and go.sum) with the few
# plugins hack/coredns/main.go imports. Cached outside the repository in
#   ${TJO_CACHE:-~/.cache/trainingjob-operator}/coredns-<version>-<inputs hash>/
# and the directory is printed on the last line of stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
VERSION=$(awk '$1=="require" && $2=="github.com/coredns/coredns"{print $3}' "$here/coredns/go.mod")
. "$here/lib/gobuild.sh"
cache_dir coredns "$VERSION" "$here/coredns/go.mod" "$here/coredns/go.sum" "$here/coredns/main.go"
reuse_if coredns
begin_build "CoreDNS ($VERSION)"
(cd "$here/coredns" && go build -trimpath -ldflags "-s -w" -o "$out.part/coredns" .)
finish_build "CoreDNS ($VERSION)"
