#!/usr/bin/env bash
# Build (or reuse) the project's container images without a registry (`make images`):
#   base      a Debian bookworm rootfs from Debian's packages (mmdebstrap --variant=minbase:
#             python3, python3-venv, ca-certificates; no docs, man pages or locales), `podman import`ed
#   runtime   the base without its package manager (hack/images/runtime; --squash-all): the last
#             stage of the operator and trainer images (--build-arg RUNTIME_IMAGE); no archive
#   shell     the base with ENTRYPOINT ["/bin/sh", "-c"]     (test pods: args: ["echo hi; exit 3"])
#   noop      hack/images/noop: a no-op "trainer" for orchestration tests (trains nothing)
#   operator  Dockerfile                  built on the base (--build-arg BASE_IMAGE, --pull=never),
#                                         runs on the runtime base
#   trainer   trainer_image/Dockerfile    the same
#   postgres  hack/images/postgres/Dockerfile: Debian's postgresql, compatible with what
#             manifests/samples/database/postgres.yaml asks of the official image (see docs/local-cluster.md)
# podman runs with the project's own storage and containers.conf (hack/podman.sh), never /etc.
# pip reaches PyPI through the host's CA bundle, mounted read-only into the build (never baked in).
#
# Output contract (for the local cluster's node, which imports them into containerd): one
# directory holding <name>.tar (docker-archive) per image and images.json mapping
# name -> {"ref": <full image reference>, "id": <image id>}; that directory is the LAST line of stdout.
# Everything is cached under ${TJO_CACHE:-~/.cache/trainingjob-operator}/images/ and rebuilt when
# missing; a code-only change rebuilds (and re-saves) just the small code layers.
# TJO_IMAGES_OUT: save the archives there instead (several work trees share the layer cache, each
# loading its own code's images; builds take the cache's lock, so one build-and-save runs at a time).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${TJO_CACHE:-$HOME/.cache/trainingjob-operator}/images
out=${TJO_IMAGES_OUT:-$cache/archives}
mkdir -p "$cache" "$out"
podman() { bash "$root/hack/podman.sh" "$@"; }
log() { echo "images: $*" >&2; }
for cmd in podman mmdebstrap; do
  command -v "$cmd" >/dev/null || { log "$cmd is required (bash hack/node-packages.sh installs it as root)"; exit 2; }
done
# One build at a time per cache (a demo and a test run may start together).
exec 9>"$cache/lock"
flock 9

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/pyproject.toml" | head -n1)
[[ -n $version ]] || { log "no version in pyproject.toml"; exit 2; }
declare -A ref=(
  [operator]=ghcr.io/trainingjob-operator/operator:$version
  [trainer]=ghcr.io/trainingjob-operator/forecast-trainer:$version
  [postgres]=docker.io/library/postgres:15
  [shell]=localhost/tjo-shell:latest
  [noop]=localhost/tjo-noop:latest
)
started=$(date +%s)
since() { echo "$(( $(date +%s) - $1 ))s"; }

# ---------------------------------------------------------------- base (mmdebstrap, then podman import)
mirror=${TJO_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${TJO_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
base_opts=(
  --variant=minbase --include=python3,python3-venv,ca-certificates --format=tar
  # merged /usr by symlinks, as debootstrap and Docker's debian images do (the usrmerge package
  # would pull the whole of perl, 46 MB, into every image)
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias'
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/lintian/*'
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/cache/ldconfig/aux-cache "$1"/var/log/*'
  bookworm - "deb $mirror bookworm main" "deb $mirror bookworm-updates main" "deb $security bookworm-security main"
)
base_key=$(printf '%s\n' "${base_opts[@]}" | sha256sum | cut -c1-12)
ref[base]=localhost/tjo-base:bookworm-$base_key
if podman image exists "${ref[base]}"; then
  log "base: reusing ${ref[base]}"
else
  t=$(date +%s)
  log "base: mmdebstrap bookworm (cold, about a minute)"
  tmp=$cache/base-$base_key.tar.part
  # stdin closed: mmdebstrap reads sources from a non-terminal stdin otherwise.
  mmdebstrap --quiet "${base_opts[@]}" </dev/null >"$tmp"
  podman import --quiet --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' \
    --message "mmdebstrap ${base_opts[*]}" "$tmp" "${ref[base]}" >/dev/null
  rm -f "$tmp"
  log "base: built ${ref[base]} in $(since "$t")"
  # Earlier bases (other mmdebstrap options) go; their layers stay until nothing uses them.
  for old in $(podman images --format '{{.Repository}}:{{.Tag}}' localhost/tjo-base); do
    [[ $old == "${ref[base]}" ]] || podman rmi "$old" >/dev/null 2>&1 || true
  done
fi

# ---------------------------------------------------------------- runtime base (the base, slimmed, one layer)
runtime_dir=$root/hack/images/runtime
runtime_key=$({ echo "${ref[base]}"; cat "$runtime_dir/Dockerfile" "$runtime_dir/slim.sh"; } | sha256sum | cut -c1-12)
ref[runtime]=localhost/tjo-runtime:bookworm-$runtime_key
if podman image exists "${ref[runtime]}"; then
  log "runtime: reusing ${ref[runtime]}"
else
  t=$(date +%s)
  if ! podman build --pull=never --squash-all --network=none --build-arg "BASE_IMAGE=${ref[base]}" \
    -t "${ref[runtime]}" "$runtime_dir" >"$cache/build-runtime.log" 2>&1; then
    tail -n 40 "$cache/build-runtime.log" >&2
    log "runtime: the build failed (whole log: $cache/build-runtime.log)"
    exit 1
  fi
  log "runtime: built ${ref[runtime]} in $(since "$t")"
  for old in $(podman images --format '{{.Repository}}:{{.Tag}}' localhost/tjo-runtime); do
    [[ $old == "${ref[runtime]}" ]] || podman rmi "$old" >/dev/null 2>&1 || true
  done
fi

# ---------------------------------------------------------------- images on the base
ca=${TJO_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
build() {  # NAME DOCKERFILE [CONTEXT]
  local name=$1 dockerfile=$2 t
  t=$(date +%s)
  if ! podman build --pull=never --layers --network=host \
    --build-arg "BASE_IMAGE=${ref[base]}" --build-arg "RUNTIME_IMAGE=${ref[runtime]}" \
    --build-arg "PIP_CERT=$ca" -v "$ca:$ca:ro" \
    -f "$dockerfile" -t "${ref[$name]}" "${3:-$root}" >"$cache/build-$name.log" 2>&1; then
    tail -n 40 "$cache/build-$name.log" >&2
    log "$name: the build failed (whole log: $cache/build-$name.log)"
    exit 1
  fi
  log "$name: ${ref[$name]} built in $(since "$t")"
}
shell_dir=$(mktemp -d)
trap 'rm -rf "$shell_dir"' EXIT
printf 'ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nENTRYPOINT ["/bin/sh", "-c"]\n' >"$shell_dir/Dockerfile"
build shell "$shell_dir/Dockerfile" "$shell_dir"
build noop "$root/hack/images/noop/Dockerfile" "$root/hack/images/noop"
build operator "$root/Dockerfile"
build trainer "$root/trainer_image/Dockerfile"
build postgres "$root/hack/images/postgres/Dockerfile" "$root/hack/images/postgres"

# ---------------------------------------------------------------- archives + images.json
for name in base shell noop operator trainer postgres; do
  id=$(podman image inspect --format '{{.Id}}' "${ref[$name]}")
  if [[ -f $out/$name.tar && $(cat "$out/$name.id" 2>/dev/null) == "$id" ]]; then
    continue
  fi
  t=$(date +%s)
  rm -f "$out/$name.tar.part"
  podman save --quiet --format docker-archive -o "$out/$name.tar.part" "${ref[$name]}"
  mv "$out/$name.tar.part" "$out/$name.tar"
  echo "$id" >"$out/$name.id"
  log "$name: saved $out/$name.tar ($(du -m "$out/$name.tar" | cut -f1) MB) in $(since "$t")"
done
python3 - "$out" base shell noop operator trainer postgres <<PY
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
refs = {"base": "${ref[base]}", "shell": "${ref[shell]}", "noop": "${ref[noop]}", "operator": "${ref[operator]}",
        "trainer": "${ref[trainer]}", "postgres": "${ref[postgres]}"}
images = {n: {"ref": refs[n], "id": (out / f"{n}.id").read_text().strip()} for n in sys.argv[2:]}
tmp = out / "images.json.part"
tmp.write_text(json.dumps(images, indent=2, sort_keys=True) + "\n")
tmp.replace(out / "images.json")
PY
log "done in $(since "$started"): $out"
echo "$out"
