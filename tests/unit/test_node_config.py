"""The node's generated configuration carries the settings these machines need (docs/node.md)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from promptalias.testbed import node
from promptalias.testbed.images import chart_image_name

REPO = Path(__file__).resolve().parents[2]


def test_containerd_config_is_private_and_works_without_cap_sys_resource(tmp_path: Path) -> None:
    config = tomllib.loads(node._containerd_config(tmp_path))
    assert config["version"] == 2
    for key in ("root", "state"):
        assert Path(config[key]).is_relative_to(tmp_path)
    assert Path(config["grpc"]["address"]).is_relative_to(tmp_path)
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True
    assert cri["netns_mounts_under_state_dir"] is True
    assert cri["sandbox_image"] == node.PAUSE_IMAGE
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert Path(cri["cni"]["conf_dir"]).is_relative_to(tmp_path)


def test_kubelet_config_runs_on_cgroup_v1_without_systemd(tmp_path: Path) -> None:
    config = json.loads(
        node._kubelet_config(tmp_path, tmp_path / "containerd.sock", 12345, cluster_dns=False)
    )
    assert config["failCgroupV1"] is False
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["address"] == node.NODE_IP != "127.0.0.1"
    assert config["healthzBindAddress"] == "127.0.0.1"
    assert config["readOnlyPort"] == 0
    assert config["containerRuntimeEndpoint"] == f"unix://{tmp_path / 'containerd.sock'}"
    assert set(config["evictionHard"].values()) == {"0%"}
    assert config["clusterDNS"] == []


def test_cni_and_proxy_stay_on_private_ranges(tmp_path: Path) -> None:
    cni = json.loads(node._cni_config(tmp_path))
    bridge = cni["plugins"][0]
    assert bridge["bridge"] == node.BRIDGE
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.244.0.0/24", "gateway": "10.244.0.1"}]]
    assert Path(bridge["ipam"]["dataDir"]).is_relative_to(tmp_path)
    proxy = json.loads(node._proxy_config(tmp_path / "kubeconfig", 1, 2))
    assert proxy["mode"] == "iptables"
    assert proxy["nodePortAddresses"] == [f"{node.NODE_IP}/32"]
    assert proxy["iptables"]["localhostNodePorts"] is False


def test_operator_image_is_imported_under_the_charts_default_name() -> None:
    assert chart_image_name(REPO) == "ghcr.io/promptalias/promptalias:0.1.0"


def test_kubelet_points_pods_at_the_cluster_dns(tmp_path: Path) -> None:
    config = json.loads(node._kubelet_config(tmp_path, tmp_path / "containerd.sock", 12345, cluster_dns=True))
    assert config["clusterDNS"] == ["10.0.0.10"]
    assert config["clusterDomain"] == "cluster.local"
    # defaults, stated: the kubelet-mounted ConfigMap baseline of `make bench` measures them
    assert config["syncFrequency"] == "60s"
    assert "configMapAndSecretChangeDetectionStrategy" not in config  # default: Watch
