"""hack/localcluster, the real node's pure parts: network planning, containerd/CNI/kubelet/kube-proxy/
CoreDNS configs, image refs."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path

import pytest

from localcluster.containerd import ContainerdPaths, bridge_conflist, containerd_config
from localcluster.images import _normalize
from localcluster.network import LINK_BASE, POD_BASE, NetworkError, NodeNetwork, plan_network, state_key
from localcluster.node import NodePaths, corefile, dns_objects, kube_proxy_config, kubelet_config


def nets(*cidrs: str) -> list[ipaddress.IPv4Network]:
    return [ipaddress.IPv4Network(c) for c in cidrs]


def test_network_names_fit_linux_interface_names_and_differ_per_state_dir(tmp_path: Path) -> None:
    a, b = state_key(tmp_path / "a"), state_key(tmp_path / "b")
    assert a != b
    net = plan_network(a, [])
    assert len(net.host_if) <= 15 and len(net.peer_if) <= 15
    assert net.netns == f"tjo-{a}" and net.host_if == f"tjoh{a}"


def test_addresses_are_private_and_inside_their_ranges() -> None:
    net = NodeNetwork("0000000a", 10)
    assert net.link == ipaddress.IPv4Network("10.213.10.0/30")
    assert (net.host_ip, net.node_ip) == ("10.213.10.1", "10.213.10.2")
    assert net.pod_cidr == ipaddress.IPv4Network("10.214.10.0/24")
    assert net.link.subnet_of(LINK_BASE) and net.pod_cidr.subnet_of(POD_BASE)  # type: ignore[arg-type]
    assert ipaddress.ip_address(net.node_ip).is_private


@pytest.mark.parametrize(
    ("taken", "expected_slot"),
    [
        ([], 16),  # the key's own slot
        (["0.0.0.0/0", "192.0.2.0/24"], 16),  # a default route or an unrelated one takes nothing
        (["10.213.16.0/30"], 17),  # another cluster's veth link
        (["10.214.16.0/24", "10.214.17.128/25"], 18),  # pod ranges routed on the host
        (["10.213.0.0/16"], None),  # everything taken
    ],
)
def test_plan_network_skips_slots_that_overlap_host_routes(taken: list[str], expected_slot: int | None) -> None:
    key = f"{16 + 256 * 7:08x}"  # slot 16
    if expected_slot is None:
        with pytest.raises(NetworkError, match="no free"):
            plan_network(key, nets(*taken))
        return
    assert plan_network(key, nets(*taken)).slot == expected_slot


def test_plan_network_keeps_the_previous_slot_while_it_is_free() -> None:
    previous = NodeNetwork("00000010", 40)
    assert plan_network("00000010", [], previous) == previous
    assert plan_network("00000010", nets("10.213.40.0/30"), previous).slot == 16
    assert plan_network("00000011", [], previous).slot == 17  # another cluster's record is not reused


def test_network_record_round_trips() -> None:
    net = NodeNetwork("abcdef01", 3)
    assert NodeNetwork.from_json(net.to_json()) == net
    assert NodeNetwork.from_json({"key": "x"}) is None
    assert NodeNetwork.from_json(None) is None


def test_containerd_config_keeps_everything_under_the_state_dir(tmp_path: Path) -> None:
    paths = ContainerdPaths(tmp_path / "node", "abcdef01")
    cfg = tomllib.loads(containerd_config(paths))
    assert len(str(paths.socket)) + len(".ttrpc") < 104  # whatever the state dir's length
    assert cfg["root"].startswith(str(tmp_path)) and cfg["state"].startswith(str(tmp_path))
    assert cfg["grpc"]["address"] == str(paths.socket)
    cri = cfg["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True
    assert cri["netns_mounts_under_state_dir"] is True
    assert cri["sandbox_image"] == "localhost/pause:3.10"
    assert cri["cni"]["conf_dir"] == str(paths.cni_conf_dir)
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["options"] == {"SystemdCgroup": False, "Root": str(paths.runc_root)}
    assert cfg["plugins"]["io.containerd.internal.v1.opt"]["path"].startswith(str(tmp_path))


def test_bridge_conflist_masquerades_and_keeps_ipam_state_local(tmp_path: Path) -> None:
    conf = bridge_conflist("tjo-abc", "cni0", "10.214.3.0/24", tmp_path)
    bridge = conf["plugins"][0]
    assert conf["name"] == "tjo-abc"
    assert bridge["isGateway"] and bridge["ipMasq"]
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.214.3.0/24"}]]
    assert bridge["ipam"]["dataDir"] == str(tmp_path)


def test_kubelet_config_fits_this_host(tmp_path: Path) -> None:
    net = NodeNetwork("abcdef01", 3)
    cfg = kubelet_config(
        NodePaths(tmp_path, net.key), net, tmp_path / "ca.crt", (tmp_path / "k.crt", tmp_path / "k.key"), "tjo-x"
    )
    assert cfg["cgroupDriver"] == "cgroupfs" and cfg["cgroupRoot"] == "/tjo-x"
    assert cfg["failSwapOn"] is False and cfg["oomScoreAdj"] == 0 and cfg["readOnlyPort"] == 0
    assert cfg["authorization"] == {"mode": "Webhook"}
    assert cfg["authentication"]["x509"]["clientCAFile"] == str(tmp_path / "ca.crt")
    assert cfg["authentication"]["anonymous"]["enabled"] is False
    assert cfg["address"] == net.node_ip
    assert cfg["resolvConf"] == ""  # no DNS server outside the cluster reaches pods
    for key in ("podLogsDir", "volumePluginDir"):
        assert cfg[key].startswith(str(tmp_path))
    assert cfg["containerRuntimeEndpoint"] == "unix:///run/trainingjob-operator/abcdef01/containerd.sock"


def test_kube_proxy_leaves_conntrack_alone(tmp_path: Path) -> None:
    cfg = kube_proxy_config(tmp_path / "kp.kubeconfig", NodeNetwork("abcdef01", 3), "local-node")
    assert cfg["mode"] == "iptables"
    assert cfg["conntrack"]["maxPerCore"] == 0
    assert cfg["conntrack"]["tcpEstablishedTimeout"] == "0s" and cfg["conntrack"]["tcpCloseWaitTimeout"] == "0s"
    assert cfg["clusterCIDR"] == "10.214.3.0/24"


def test_coredns_serves_the_cluster_domain_and_forwards_nothing(tmp_path: Path) -> None:
    net = NodeNetwork("abcdef01", 3)
    text = corefile(tmp_path / "coredns.kubeconfig", net)
    assert "kubernetes cluster.local in-addr.arpa ip6.arpa" in text
    assert f"kubeconfig {tmp_path / 'coredns.kubeconfig'}" in text
    assert "forward" not in text
    assert f"ready {net.node_ip}:" in text
    (_, service), (_, slice_) = dns_objects(net)
    assert service["spec"]["clusterIP"] == "10.0.0.10"
    assert slice_["endpoints"][0]["addresses"] == [net.node_ip]
    assert slice_["metadata"]["labels"]["kubernetes.io/service-name"] == "kube-dns"


@pytest.mark.parametrize(
    ("ref", "name"),
    [
        ("localhost/pause:3.10", "localhost/pause:3.10"),
        ("localhost/tjo-shell", "localhost/tjo-shell:latest"),
        ("ghcr.io/trainingjob-operator/forecast-trainer:dev", "ghcr.io/trainingjob-operator/forecast-trainer:dev"),
        ("busybox", "docker.io/library/busybox:latest"),
        ("library/busybox:1", "docker.io/library/busybox:1"),
        ("localhost:5000/x", "localhost:5000/x:latest"),
    ],
)
def test_image_refs_are_named_as_containerd_names_them(ref: str, name: str) -> None:
    assert _normalize(ref) == name


def test_sysctls_are_restored_by_the_last_cluster_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two clusters up at once: the second must not record what the first one's kubelet wrote."""
    from localcluster import cleanup

    proc = tmp_path / "proc"
    monkeypatch.setattr(cleanup, "PROC_SYS", proc)
    panic = proc / "kernel" / "panic"
    panic.parent.mkdir(parents=True)
    panic.write_text("0\n")
    record = tmp_path / "run" / "sysctls.json"
    cleanup.record_sysctls("/a", record)
    panic.write_text("10\n")  # cluster a's kubelet
    cleanup.record_sysctls("/b", record)
    assert cleanup.restore_sysctls("/a", record) == {}  # b is still up
    assert panic.read_text() == "10\n"
    assert cleanup.restore_sysctls("/b", record) == {"kernel.panic": ("10", "0")}
    assert panic.read_text() == "0" and not record.exists()


def test_fixed_path_folders_made_while_clusters_ran_go_with_the_last_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from localcluster import cleanup

    monkeypatch.setattr(cleanup, "PROC_SYS", tmp_path / "proc")
    existing, kubelet = tmp_path / "var-log-containers", tmp_path / "var-lib-kubelet"
    plugins = kubelet / "device-plugins"
    existing.mkdir()
    monkeypatch.setattr(cleanup, "HOST_DIRS", (existing, kubelet, plugins))
    record = tmp_path / "run" / "sysctls.json"
    cleanup.record_sysctls("/a", record)
    plugins.mkdir(parents=True)  # a kubelet's device-plugin socket folder
    (plugins / "kubelet.sock").write_text("")
    cleanup.record_sysctls("/b", record)
    cleanup.restore_sysctls("/b", record)
    assert plugins.exists()  # /a still runs
    cleanup.restore_sysctls("/a", record)
    assert not kubelet.exists() and existing.exists()
    assert not record.parent.exists()
