"""A real local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler built from the Go modules) and a real node (kubelet + containerd + runc + CNI,
kube-proxy, CoreDNS) in a network namespace of its own.

``python -m localcluster up|down|status``; from Python: ``LocalCluster(state_dir, bin_dir).start()``.
"""

from localcluster.binaries import BinariesError, can_build, find_binaries
from localcluster.cluster import COMPONENTS, ClusterError, ClusterInfo, LocalCluster, default_state_dir

__all__ = [
    "COMPONENTS",
    "BinariesError",
    "ClusterError",
    "ClusterInfo",
    "LocalCluster",
    "can_build",
    "default_state_dir",
    "find_binaries",
]
