#!/usr/bin/env bash
# Install (once) the Debian packages of the local cluster's real node and of the image builds:
# containerd + runc (crun fails on cgroup v1 "hybrid" hosts), CNI plugins, iptables (kube-proxy),
# catatonit (the pause image), podman/buildah/mmdebstrap (images without a registry).
# Needs root and Debian's package lists; does nothing when every command is already there.
set -euo pipefail
need=()
for pair in containerd:containerd runc:runc podman:podman buildah:buildah mmdebstrap:mmdebstrap \
            /usr/lib/cni/bridge:containernetworking-plugins iptables:iptables catatonit:catatonit \
            /usr/share/containers/containers.conf:golang-github-containers-common; do
  cmd=${pair%%:*} pkg=${pair#*:}
  if [[ $cmd == /* ]]; then [[ -e $cmd ]] || need+=("$pkg"); else command -v "$cmd" >/dev/null || need+=("$pkg"); fi
done
[[ ${#need[@]} -eq 0 ]] && exit 0
if [[ $(id -u) -ne 0 ]]; then
  echo "the real node needs these Debian packages (install them as root): ${need[*]}" >&2
  exit 2
fi
echo "installing Debian packages: ${need[*]}" >&2
apt-get update -q >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2
