#!/usr/bin/env bash
# Build (or reuse) promtool from the Prometheus Go module pinned in hack/promtool (cmd/promtool),
# for the tests of manifests/overlays/monitoring (promtool check rules / test rules), and
# metricnames (hack/promtool/metricnames: the metric names a PromQL expression selects, by the
# same module's PromQL parser). Cached outside the repository in
#   ${TJO_CACHE:-~/.cache/trainingjob-operator}/promtool-<module version>-<hash of inputs>/
# (inputs: go.mod, go.sum and the Go sources) and the directory is printed on the
# last line of stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
MODULE_VERSION=$(awk '$1=="require" && $2=="github.com/prometheus/prometheus"{print $3}' "$here/promtool/go.mod")
# The Go module v0.MNN.P is Prometheus M.NN.P (v0.316.0 = 3.16.0).
PROM_VERSION=$(echo "$MODULE_VERSION" | sed -E 's/^v0\.([0-9])([0-9]+)\.([0-9]+).*/\1.\2.\3/; s/\.0([0-9])\./.\1./')
. "$here/lib/gobuild.sh"
cache_dir promtool "$MODULE_VERSION" "$here/promtool/go.mod" "$here/promtool/go.sum" "$here/promtool/tools.go" \
  "$here/promtool/metricnames/main.go"
reuse_if promtool metricnames
begin_build "promtool $PROM_VERSION ($MODULE_VERSION)"
ldflags="-s -w -X github.com/prometheus/common/version.Version=$PROM_VERSION -X github.com/prometheus/common/version.Branch=HEAD"
# remove_all_sd: no service-discovery plugins (AWS, Azure, GCE, Kubernetes, ...) but file and http;
# checking and unit-testing rules needs none, and the build is several times smaller.
(cd "$here/promtool" && go build -trimpath -tags remove_all_sd -ldflags "$ldflags" -o "$out.part/promtool" github.com/prometheus/prometheus/cmd/promtool)
echo "  built promtool after $(( $(date +%s) - build_start ))s" >&2
(cd "$here/promtool" && go build -trimpath -ldflags "-s -w" -o "$out.part/metricnames" ./metricnames)
finish_build "promtool $PROM_VERSION"
