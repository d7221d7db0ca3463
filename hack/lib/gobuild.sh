# Sourced by hack/build-*.sh: the one cache layout of the Go-built tools (never committed):
#   ${TJO_CACHE:-~/.cache/trainingjob-operator}/<name>-<version>-<hash of the inputs>/
# A script calls   cache_dir NAME VERSION INPUT...   (sets $out),
#                  reuse_if PATH...                  (prints $out and exits when every PATH exists),
#                  begin_build WHAT                  (checks for go, makes $out.part, sets the Go env),
#                  finish_build WHAT                 ($out.part -> $out; prints $out, the last line of stdout).
# shellcheck shell=bash

cache_dir() {
  local name=$1 version=$2
  shift 2
  local key
  key=$(cat "$@" | sha256sum | cut -c1-12)
  out="${TJO_CACHE:-$HOME/.cache/trainingjob-operator}/$name-$version-$key"
}

reuse_if() {
  local p
  for p in "$@"; do [[ -e "$out/$p" ]] || return 0; done
  echo "$(basename "$out" | cut -d- -f1): reusing $out" >&2
  echo "$out"
  exit 0
}

begin_build() {
  command -v go >/dev/null || { echo "go is required to build $1 (apt-get install golang or see go.dev)" >&2; exit 2; }
  rm -rf "$out.part" && mkdir -p "$out.part"
  export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
  build_start=$(date +%s)
  echo "building $1 into $out (cold build, takes a while)" >&2
}

finish_build() {
  chmod -R u+w "$out.part"
  rm -rf "$out" && mv "$out.part" "$out"
  echo "$1 built in $(( $(date +%s) - build_start ))s: $out" >&2
  echo "$out"
}
