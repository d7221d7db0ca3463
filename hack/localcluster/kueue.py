"""Kueue (sigs.k8s.io/kueue, built by hack/build-kueue.sh) as a local process against the local cluster.

What a real install does, on loopback: Kueue's own CRDs, a Kueue ``Configuration`` (the
``batch/job`` integration only, ``manageJobsWithoutQueueName: false``, no internal certificate
management), its webhook server on ``127.0.0.1:<free port>`` with a certificate signed by a CA of
our own, and Kueue's own Mutating/ValidatingWebhookConfigurations with each ``clientConfig``
turned into ``url: https://127.0.0.1:<port><path>`` plus that CA as ``caBundle`` (the API server
reaches a webhook on loopback; there is no Service network here).

Two local-process details:

- Kueue runs with the admin kubeconfig (a real install has its own ServiceAccount and RBAC).
- With internal certificate management off, Kueue 0.13 insists on a metrics serving certificate at
  the fixed path ``/etc/kueue/metrics/certs`` (it exits without one). Rather than write into the
  host's ``/etc``, Kueue runs in a private mount namespace (``unshare --mount``)
  where an overlay adds ``kueue/metrics/certs`` to ``/etc``; nothing changes on the host.

Only the webhooks of what is enabled are registered (Jobs and Kueue's own kinds): Kueue does not
serve the others, and with ``failurePolicy: Fail`` they would block every Pod or Deployment.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from localcluster.binaries import BinariesError, run_build_script
from localcluster.certs import ensure_loopback_serving
from localcluster.procs import PidRecord, spawn, stop_all

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "hack" / "build-kueue.sh"
KUEUE_NAMESPACE = "kueue-system"
WEBHOOK_NAMES = ("kueue-mutating-webhook-configuration", "kueue-validating-webhook-configuration")
SERVED_PATHS = ("-batch-v1-job", "-kueue-x-k8s-io-")
"""Webhook paths Kueue serves with only the batch/job integration on (Jobs and Kueue's own kinds)."""
METRICS_CERT_DIR = "kueue/metrics/certs"
"""Under /etc: where Kueue reads its metrics certificate when it does not manage certificates."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_kueue(env_var: str = "TJO_KUEUE_BIN") -> Path:
    """The directory holding ``kueue``, ``crds/`` and ``webhook/manifests.yaml``: ``$TJO_KUEUE_BIN``,
    else the output of hack/build-kueue.sh (its cache, or a cold build when Go is installed)."""
    env = os.environ.get(env_var)
    if env:
        return _check(Path(env).expanduser().resolve(), env_var)
    return _check(run_build_script(BUILD_SCRIPT), "hack/build-kueue.sh output")


def _check(directory: Path, source: str) -> Path:
    need = [directory / "kueue", directory / "webhook" / "manifests.yaml", directory / "crds"]
    missing = [str(p) for p in need if not p.exists()]
    if missing:
        raise BinariesError(f"{source} ({directory}) lacks {', '.join(missing)}")
    return directory


def configuration(webhook_port: int, health_port: int, cert_dir: Path) -> dict[str, Any]:
    """Kueue's ``Configuration`` for a local process (pure)."""
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta1",
        "kind": "Configuration",
        "namespace": KUEUE_NAMESPACE,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": "0"},
        "webhook": {"host": "127.0.0.1", "port": webhook_port, "certDir": str(cert_dir)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "manageJobsWithoutQueueName": False,
        "integrations": {"frameworks": ["batch/job"]},
        # The on-demand visibility API server would listen on :8082 on every interface.
        "featureGates": {"VisibilityOnDemand": False},
    }


def webhook_configurations(manifests: str, port: int, ca_pem: bytes) -> list[dict[str, Any]]:
    """Kueue's own webhook configurations (config/components/webhook/manifests.yaml), named as a
    release names them, with the webhooks Kueue serves here pointed at ``https://127.0.0.1:<port>`` (pure)."""
    out = []
    bundle = base64.b64encode(ca_pem).decode()
    for doc in yaml.safe_load_all(manifests):
        if not doc or doc.get("kind") not in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            continue
        kept = []
        for hook in doc.get("webhooks") or []:
            path = ((hook.get("clientConfig") or {}).get("service") or {}).get("path", "")
            if any(p in path for p in SERVED_PATHS):
                hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": bundle}
                kept.append(hook)
        doc["metadata"] = {"name": f"kueue-{doc['metadata']['name']}"}
        doc["webhooks"] = kept
        out.append(doc)
    return out


@dataclass
class Kueue:
    """Kueue's manager as a local process; ``start()`` returns once its webhooks answer through the API server."""

    kubeconfig: Path
    state_dir: Path
    kueue_dir: Path | None = None
    webhook_port: int = field(default_factory=free_port)
    health_port: int = field(default_factory=free_port)
    start_seconds: float = 0.0
    """How long the last ``start()`` took (CRDs applied, process up, webhooks answering)."""

    @property
    def log_path(self) -> Path:
        return self.state_dir / "kueue.log"

    @property
    def pid_path(self) -> Path:
        return self.state_dir / "kueue.pid"

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 120) -> str:
        result = subprocess.run(
            ["kubectl", f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def start(self, timeout: float = 90) -> None:
        began = time.monotonic()
        kdir = self.kueue_dir = self.kueue_dir or find_kueue()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        pki = ensure_loopback_serving(self.state_dir / "pki", "kueue-webhook")
        cert_dir = self.state_dir / "webhook-certs"
        overlay = self.state_dir / "etc-overlay"
        for target in (cert_dir, overlay / "upper" / METRICS_CERT_DIR):
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(pki.serving_cert, target / "tls.crt")
            shutil.copyfile(pki.serving_key, target / "tls.key")
        (overlay / "work").mkdir(exist_ok=True)
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(kdir / "crds"))
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(kdir / "crds"))
        self.kubectl("apply", "-f", "-", input=json.dumps(_namespace(KUEUE_NAMESPACE)))
        config = self.state_dir / "config.yaml"
        config.write_text(yaml.safe_dump(configuration(self.webhook_port, self.health_port, cert_dir)))
        mount = (
            f"mount -t overlay overlay -o lowerdir=/etc,upperdir={overlay / 'upper'},workdir={overlay / 'work'} /etc"
        )
        argv = [
            "unshare", "--mount", "--propagation", "private", "--",
            "sh", "-c", f'{mount} && exec "$0" "$@"', str(kdir / "kueue"), f"--config={config}",
        ]  # fmt: skip
        spawn(argv, self.log_path, self.pid_path, env={**os.environ, "KUBECONFIG": str(self.kubeconfig)})
        deadline = time.monotonic() + timeout
        self._wait(self._healthy, "readyz", deadline)
        hooks = webhook_configurations((kdir / "webhook" / "manifests.yaml").read_text(), self.webhook_port,
                                       pki.ca_cert.read_bytes())  # fmt: skip
        self.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(h) for h in hooks))
        self._wait(self._webhooks_answer, "webhooks through the API server", deadline)
        self.start_seconds = time.monotonic() - began

    def _wait(self, probe: Any, what: str, deadline: float) -> None:
        last = ""
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"kueue exited while waiting for {what}:\n{self.tail()}")
            try:
                if probe():
                    return
            except (OSError, RuntimeError) as exc:
                last = str(exc)
            time.sleep(0.3)
        raise RuntimeError(f"kueue: no {what} in time ({last}):\n{self.tail()}")

    def _healthy(self) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/readyz", timeout=2) as r:
            return bool(r.status == 200)

    def _webhooks_answer(self) -> bool:
        """A server-side dry-run create of a ResourceFlavor passes Kueue's mutating webhook."""
        flavor = {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "ResourceFlavor", "metadata": {"name": "probe"}}
        self.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(flavor))
        return True

    def alive(self) -> bool:
        record = PidRecord.load(self.pid_path)
        return record is not None and record.alive()

    def stop(self) -> None:
        """Remove the webhook configurations first (with ``failurePolicy: Fail`` they would refuse
        every Job once Kueue is gone), then stop the process."""
        for name in WEBHOOK_NAMES:
            kind = "mutatingwebhookconfiguration" if "mutating" in name else "validatingwebhookconfiguration"
            try:
                self.kubectl("delete", kind, name, "--ignore-not-found", "--wait=false")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass  # the cluster may be gone already
        stop_all([self.pid_path])

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def _namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def objects(quota_cpu: str, cluster_queue: str, local_queue: str, namespace: str) -> Iterator[dict[str, Any]]:
    """A ResourceFlavor, a ClusterQueue with ``quota_cpu`` of CPU (and preemption of lower
    priorities within it) and a LocalQueue pointing at it in ``namespace`` (pure)."""
    yield {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "ResourceFlavor", "metadata": {"name": "default-flavor"}}
    yield {
        "apiVersion": "kueue.x-k8s.io/v1beta1",
        "kind": "ClusterQueue",
        "metadata": {"name": cluster_queue},
        "spec": {
            "namespaceSelector": {},
            "preemption": {"withinClusterQueue": "LowerPriority"},
            "resourceGroups": [
                {
                    "coveredResources": ["cpu"],
                    "flavors": [{"name": "default-flavor", "resources": [{"name": "cpu", "nominalQuota": quota_cpu}]}],
                }
            ],
        },
    }
    yield {
        "apiVersion": "kueue.x-k8s.io/v1beta1",
        "kind": "LocalQueue",
        "metadata": {"name": local_queue, "namespace": namespace},
        "spec": {"clusterQueue": cluster_queue},
    }
