#!/usr/bin/env bash
# podman with the project's own storage and configuration, never the host's:
#   bash hack/podman.sh images          bash hack/podman.sh run --rm localhost/tjo-shell 'id'
# Storage, run state, containers.conf and network configs live under
#   ${TJO_CACHE:-~/.cache/trainingjob-operator}/images/podman/
# (nothing is written to /etc); only the run state (locks, mount points; podman allows a path of at most
# 50 characters there) lives in /run/tjo-podman-<hash of that folder>/ (tmpfs: a reboot clears it, as it should). The settings this machine kind needs: runc (crun fails on a cgroup v1
# "hybrid" host), cgroupfs (no systemd), and default ulimits within the hard limits (podman cannot
# raise them without CAP_SYS_RESOURCE).
set -euo pipefail
dir=${TJO_CACHE:-$HOME/.cache/trainingjob-operator}/images/podman
run_parent=/run; [[ -w /run ]] || run_parent=${TMPDIR:-/tmp}
runroot=$run_parent/tjo-podman-$(printf '%s' "$dir" | sha256sum | cut -c1-12)
mkdir -p "$dir/networks" "$dir/tmp" "$dir/storage" "$runroot"
conf=$(cat <<TOML
# written by hack/podman.sh
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$dir/events.log"
tmp_dir = "$dir/tmp"

[network]
network_config_dir = "$dir/networks"
TOML
)
[[ -f $dir/containers.conf && $(cat "$dir/containers.conf") == "$conf" ]] || printf '%s\n' "$conf" >"$dir/containers.conf"
export CONTAINERS_CONF=$dir/containers.conf
exec podman --root "$dir/storage" --runroot "$runroot" --storage-driver overlay "$@"
