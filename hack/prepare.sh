#!/usr/bin/env bash
# Everything the tests (or the demo) need, installed or built at once on a fresh machine, in three
# chains that run side by side (a cold machine spends most of its set-up waiting on the network or
# on one core, so they overlap):
#   python: .venv with the project and its dev extras (pip);
#   images: the real node's Debian packages, then the base, operator, trainer, shell and PostgreSQL
#           images (mmdebstrap, pip in podman builds);
#   go:     the Kubernetes binaries (control plane, kubelet, kube-proxy), CoreDNS, and for the tests
#           Kueue, kstatus and promtool (one Go build after another: each uses every core).
# Each step caches under ~/.cache/trainingjob-operator/ and is quick when warm.
# Usage: eval "$(bash hack/prepare.sh test|demo | tail -n1)"  — the last line exports TJO_IMAGES_DIR,
# TJO_K8S_BIN, TJO_COREDNS_BIN (and for `test` TJO_PROMTOOL, TJO_KUEUE_BIN, TJO_KSTATUS).
# A failing chain fails the whole (its log is printed); the others are waited for, not killed.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-test}
[[ $what == test || $what == demo ]] || { echo "usage: $0 test|demo" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
started=$(date +%s)

chain_python() { bash hack/venv.sh; }
chain_images() {
  bash hack/node-packages.sh
  local dir
  dir=$(bash hack/build-images.sh | tail -n1)  # an assignment: a failed build fails the chain
  echo "TJO_IMAGES_DIR=$dir" >"$work/images.env"
}
chain_go() {
  local out=$work/go.env dir
  builds=(TJO_K8S_BIN:build-binaries TJO_COREDNS_BIN:build-coredns)
  [[ $what == test ]] && builds+=(TJO_KUEUE_BIN:build-kueue TJO_KSTATUS:build-kstatus TJO_PROMTOOL:build-promtool)
  : >"$out"
  for pair in "${builds[@]}"; do
    dir=$(bash "hack/${pair#*:}.sh" | tail -n1)  # an assignment: a failed build fails the chain
    [[ ${pair%%:*} == TJO_KSTATUS ]] && dir=$dir/kstatus
    echo "${pair%%:*}=$dir" >>"$out"
  done
}

declare -A pids=()
for chain in python images go; do
  # `set -e` inside a function run in a subshell: the chain stops at its first failing step.
  ( set -e; "chain_$chain"; echo "$(( $(date +%s) - started ))" >"$work/$chain.seconds" ) >"$work/$chain.log" 2>&1 &
  pids[$chain]=$!
done
failed=()
for chain in python images go; do
  if wait "${pids[$chain]}"; then
    echo "prepare: $chain ready after $(cat "$work/$chain.seconds") s" >&2
  else
    failed+=("$chain")
    echo "prepare: the $chain chain failed; its log:" >&2
    sed "s/^/[$chain] /" "$work/$chain.log" >&2
  fi
done
[[ ${#failed[@]} -eq 0 ]] || exit 1
exports=()
while IFS= read -r line; do
  [[ -n $line ]] && exports+=("export ${line%%=*}=$(printf '%q' "${line#*=}")")
done < <(cat "$work/images.env" "$work/go.env")
for line in "${exports[@]}"; do
  value=${line#*=}
  [[ -n $value && $value != "''" ]] || { echo "prepare: empty result: $line" >&2; exit 1; }
done
(IFS=';'; echo "${exports[*]}")
