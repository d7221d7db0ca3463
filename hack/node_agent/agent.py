"""The node agent: a kubelet stand-in that runs the pods bound to its Node as local processes.

Threads: a pod watcher (list + watch, field selector ``spec.nodeName``), a few workers that
reconcile one pod at a time from a keyed work queue, a supervisor that notices exits and
enforces ``activeDeadlineSeconds``, memory limits and termination grace periods, a heartbeat
that renews the node Lease, and a node-status loop. Every loop rides out API outages of any
length (connection refused, timeouts, a stalled server): it logs, backs off and retries; no
error ends a thread (see :func:`transient` and :meth:`Agent._loop`).

Per pod the reconcile step compares the API object with the local state and acts:
new pod -> check images, materialise volumes, resolve env, launch containers, report Running;
container exited -> collect exit code and termination message, restart (OnFailure/Always) or
report Succeeded/Failed; deletionTimestamp -> SIGTERM, grace period, SIGKILL, final status,
then a grace-period-0 delete (finalizers are left to their owners); gone -> remove the pod folder.
"""

from __future__ import annotations

import logging
import os
import platform
import pwd
import shutil
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psutil
import urllib3

from node_agent import runtime, status
from node_agent.envs import ConfigError, container_argv, container_env, parse_quantity
from node_agent.images import STANDARD_PATH, ImageMap, ImageSpec
from node_agent.kube import Json, Kube, KubeError
from node_agent.runtime import ContainerProcess, LaunchSpec
from node_agent.status import ContainerView, Terminated
from node_agent.volumes import Ownership, UnsupportedVolume, VolumePending, b64_data, container_mounts, materialize
from node_agent.workqueue import WorkQueue

log = logging.getLogger("node_agent")

VERSION = "0.1.0"
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"
LOST_MESSAGE = "The container could not be located when the pod was terminated"
CONFIG_RETRY = 2.0
# After a failed API call, retry after 0.5 s, 1 s, 2 s (capped): back within ~2 s of an outage's end.
ERROR_BACKOFF = (0.5, 2.0)
# Worker retries of one pod after an error: 1 s, 2 s, 4 s, at most 5 s.
POD_BACKOFF = (1.0, 5.0)


def transient(exc: BaseException) -> bool:
    """An error of the API connection rather than of the request: the server is down, restarting,
    stalled or overloaded. urllib3 reports refused connections as ``MaxRetryError`` and timeouts as
    ``ReadTimeoutError``/``ConnectTimeoutError``: urllib3 ``HTTPError``s, which are not ``OSError``s."""
    if isinstance(exc, KubeError):
        return exc.status >= 500 or exc.status == 429
    return isinstance(exc, OSError | urllib3.exceptions.HTTPError)


def describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:300]}"


@dataclass
class Settings:
    node_name: str
    state_dir: Path
    kubeconfig: str | None = None
    images: ImageMap = field(default_factory=ImageMap.load)
    max_pods: int = 110
    workers: int = 8
    lease_duration: int = 40
    lease_renew: float = 10.0
    status_check: float = 5.0
    """How often the node's Ready condition is checked: reported again at once when it is not True
    (the node lifecycle controller sets it Unknown after an outage longer than its grace period)."""
    status_report: float = 60.0
    tick: float = 0.1
    memory_poll: float = 0.25
    restart_backoff: float = 10.0
    max_restart_backoff: float = 300.0
    labels: dict[str, str] = field(default_factory=dict)


class Fatal(Exception):
    """The pod can never run here: it is failed with this reason and message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class ContainerState:
    name: str
    image: str
    spec: Json
    launch: LaunchSpec | None = None
    proc: ContainerProcess | None = None
    restart_count: int = 0
    terminated: Terminated | None = None
    last_terminated: Terminated | None = None
    waiting_reason: str = "ContainerCreating"
    waiting_message: str = ""
    restart_at: float | None = None
    memory_limit: int | None = None

    def running(self) -> bool:
        return self.proc is not None and self.terminated is None and not self.proc.exited()

    def view(self) -> ContainerView:
        if self.terminated is not None:
            return ContainerView(
                self.name,
                self.image,
                "terminated",
                terminated=self.terminated,
                last_terminated=self.last_terminated,
                restart_count=self.restart_count,
            )
        if self.proc is not None and self.restart_at is None:
            return ContainerView(
                self.name,
                self.image,
                "running",
                started_at=self.proc.started_at,
                last_terminated=self.last_terminated,
                restart_count=self.restart_count,
                container_id=f"nodeagent://{self.proc.pid}",
            )
        return ContainerView(
            self.name,
            self.image,
            "waiting",
            reason=self.waiting_reason,
            message=self.waiting_message,
            last_terminated=self.last_terminated,
            restart_count=self.restart_count,
        )


@dataclass
class PodState:
    uid: str
    namespace: str
    name: str
    dir: Path
    containers: dict[str, ContainerState] = field(default_factory=dict)
    start_time: float = field(default_factory=time.time)
    started: bool = False
    adopted: bool = False
    deadline: float | None = None
    override: tuple[str, str | None, str | None] | None = None  # (phase, reason, message)
    terminating: bool = False
    kill_at: float | None = None
    deletion_sent: bool = False
    last_posted: Json | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def running(self) -> list[ContainerState]:
        return [c for c in self.containers.values() if c.running()]

    def views(self) -> list[ContainerView]:
        return [c.view() for c in self.containers.values()]


def _security(pod: Json, container: Json) -> tuple[Json, Json]:
    return (pod["spec"].get("securityContext") or {}), (container.get("securityContext") or {})


def _primary_gid(uid: int) -> int:
    try:
        return pwd.getpwuid(uid).pw_gid
    except KeyError:
        return 0


def _grace_seconds(pod: Json) -> float:
    meta_grace = pod["metadata"].get("deletionGracePeriodSeconds")
    spec_grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
    grace = meta_grace if meta_grace is not None else spec_grace
    return float(max(0, grace if grace is not None else 30))


class Agent:
    def __init__(self, settings: Settings, kube: Kube | None = None) -> None:
        self.s = settings
        self.kube = kube or Kube(settings.kubeconfig)
        self.pods_root = settings.state_dir / "pods"
        self.pods: dict[str, Json] = {}
        self.states: dict[str, PodState] = {}
        self.lock = threading.Lock()
        self.queue = WorkQueue()
        self.stopping = threading.Event()
        self.synced = threading.Event()
        self.node_uid = ""
        self.kube_version = "v0.0.0"
        server = urlparse(self.kube.server)
        self.api_host = server.hostname or "127.0.0.1"
        self.api_port = server.port or 443
        self.threads: list[threading.Thread] = []
        self._last_status = time.monotonic()
        self._pod_failures: dict[str, int] = {}

    # =============================================================== lifecycle

    def run(self) -> None:
        """Register the node, adopt what an earlier agent left running, then serve until stopped."""
        self.s.state_dir.mkdir(parents=True, exist_ok=True)
        self.pods_root.mkdir(parents=True, exist_ok=True)
        self.register_node()
        self.adopt()
        self._thread("pod-watch", self._watch_loop)
        self._thread("supervisor", self._supervise_loop)
        self._thread("heartbeat", self._heartbeat_loop)
        self._thread("node-status", self._node_status_loop)
        for i in range(self.s.workers):
            self._thread(f"worker-{i}", self._worker_loop)
        log.info(
            "node %s ready: %d pods max, images: %s",
            self.s.node_name,
            self.s.max_pods,
            ", ".join(self.s.images.known()),
        )
        self.stopping.wait()
        self.queue.shutdown()
        log.info("node agent stopping; containers keep running and are adopted by the next agent")

    def stop(self) -> None:
        self.stopping.set()

    def _thread(self, name: str, target: Any) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self.threads.append(t)

    # ===================================================================== node

    def _node_info(self) -> dict[str, str]:
        def read(path: str) -> str:
            try:
                return Path(path).read_text().strip()
            except OSError:
                return ""

        os_image = "Linux"
        for line in read("/etc/os-release").splitlines():
            if line.startswith("PRETTY_NAME="):
                os_image = line.split("=", 1)[1].strip('"')
        return {
            "machineID": read("/etc/machine-id"),
            "systemUUID": read("/etc/machine-id"),
            "bootID": read("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": platform.release(),
            "osImage": os_image,
            "containerRuntimeVersion": f"tjo-node-agent://{VERSION}",
            "kubeletVersion": self.kube_version,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64" if platform.machine() in ("x86_64", "amd64") else platform.machine(),
        }

    def _node_status(self, existing: list[Json] | None) -> Json:
        disk = shutil.disk_usage(self.s.state_dir)
        return status.node_status(
            cpu=os.cpu_count() or 1,
            memory_bytes=psutil.virtual_memory().total,
            pods=self.s.max_pods,
            ephemeral_bytes=disk.total,
            hostname=socket.gethostname(),
            node_info=self._node_info(),
            now=time.time(),
            existing=existing,
        )

    def register_node(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                self.kube_version = str(self.kube.get("/version").get("gitVersion", self.kube_version))
                node = status.node_object(self.s.node_name, self.s.labels)
                try:
                    created = self.kube.post("/api/v1/nodes", {**node, **self._node_status(None)})
                    log.info("registered node %s", self.s.node_name)
                except KubeError as exc:
                    if not exc.conflict:
                        raise
                    created = self.kube.get(f"/api/v1/nodes/{self.s.node_name}")
                self.node_uid = created["metadata"]["uid"]
                self.report_node_status()
                self.renew_lease()
                return
            except (KubeError, OSError, urllib3.exceptions.HTTPError) as exc:
                # The API server may still be starting: connection refused surfaces as urllib3's
                # MaxRetryError, which is not an OSError.
                if time.monotonic() > deadline:
                    raise
                log.info("registering node %s: %s (retrying)", self.s.node_name, exc)
                time.sleep(0.2)

    def report_node_status(self) -> None:
        node = self.kube.get(f"/api/v1/nodes/{self.s.node_name}")
        self.node_uid = node["metadata"]["uid"]
        body = self._node_status(node.get("status", {}).get("conditions"))
        self.kube.patch(f"/api/v1/nodes/{self.s.node_name}/status", body)
        self._last_status = time.monotonic()

    def renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.s.node_name}"
        lease = status.node_lease(self.s.node_name, self.node_uid, self.s.node_name, self.s.lease_duration, time.time())
        try:
            self.kube.patch(path, {"spec": lease["spec"]}, "merge")
        except KubeError as exc:
            if not exc.not_found:
                raise
            self.kube.post("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease)

    def check_node_status(self) -> None:
        """Report node status when it is due, or at once when the node is not Ready as we report it
        (after an outage the node lifecycle controller may have set Ready=Unknown and tainted the
        node unreachable: it lifts the taint when it sees Ready=True again)."""
        node = self.kube.get(f"/api/v1/nodes/{self.s.node_name}")
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in node.get("status", {}).get("conditions") or []
        )
        if not ready or time.monotonic() - self._last_status >= self.s.status_report:
            if not ready:
                log.info("node %s is not Ready in the API: reporting its status", self.s.node_name)
            self.report_node_status()

    def _heartbeat_loop(self) -> None:
        self._loop("node lease", self.s.lease_renew, self.renew_lease)

    def _node_status_loop(self) -> None:
        self._loop("node status", self.s.status_check, self.check_node_status)

    def _loop(self, what: str, period: float, step: Any) -> None:
        """Call ``step`` every ``period`` seconds until the agent stops. Nothing ends the loop: after a
        failure it retries with a short back-off (:data:`ERROR_BACKOFF`, so it is back within seconds
        of the API server) and says once when it works again."""
        delay = period
        failing_since: float | None = None
        while not self.stopping.wait(delay):
            try:
                step()
            except Exception as exc:
                if failing_since is None:
                    failing_since = time.monotonic()
                    delay = ERROR_BACKOFF[0]
                else:
                    delay = min(delay * 2, ERROR_BACKOFF[1], period)
                if transient(exc):
                    log.warning("%s: API unreachable (%s); retrying in %.1fs", what, describe(exc), delay)
                else:
                    log.exception("%s failed; retrying in %.1fs", what, delay)
                continue
            if failing_since is not None:
                log.info("%s: working again after %.1fs of errors", what, time.monotonic() - failing_since)
                failing_since = None
            delay = period

    # =================================================================== watch

    def _watch_loop(self) -> None:
        selector = f"spec.nodeName={self.s.node_name}"
        rv: str | None = None
        while not self.stopping.is_set():
            try:
                if rv is None:
                    listed = self.kube.get("/api/v1/pods", {"fieldSelector": selector})
                    rv = str(listed["metadata"]["resourceVersion"])
                    current = {p["metadata"]["uid"]: p for p in listed.get("items") or []}
                    with self.lock:
                        keys = set(current) | set(self.pods) | set(self.states)
                        self.pods = current
                    for uid in keys:
                        self.queue.add(uid)
                    self.synced.set()
                for event in self.kube.watch("/api/v1/pods", {"fieldSelector": selector, "resourceVersion": rv}):
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            rv = None
                            break
                        raise KubeError("WATCH", "/api/v1/pods", int(obj.get("code") or 500), str(obj))
                    rv = str(obj["metadata"]["resourceVersion"])
                    if kind == "BOOKMARK":
                        continue
                    uid = obj["metadata"]["uid"]
                    with self.lock:
                        if kind == "DELETED":
                            self.pods.pop(uid, None)
                        else:
                            self.pods[uid] = obj
                    self.queue.add(uid)
            except KubeError as exc:
                if exc.gone:
                    rv = None
                    continue
                log.warning("pod watch: %s", exc)
                self.stopping.wait(1)
            except Exception as exc:  # connection refused/reset, timeouts, a restarted server: relist
                log.warning("pod watch: %s (relisting in 1s)", describe(exc))
                rv = None
                self.stopping.wait(1)

    # ================================================================= workers

    def _worker_loop(self) -> None:
        while True:
            uid = self.queue.get()
            if uid is None:
                return
            try:
                self.reconcile(uid)
                self._pod_failures.pop(uid, None)
            except Exception as exc:
                # Retried with a per-pod back-off, forever: posting a status or reading a Secret
                # during an API outage fails until the server is back.
                n = self._pod_failures.get(uid, 0)
                self._pod_failures[uid] = n + 1
                delay = min(POD_BACKOFF[0] * 2**n, POD_BACKOFF[1])
                if transient(exc):
                    log.warning("pod %s: API unreachable (%s); retrying in %.0fs", uid, describe(exc), delay)
                else:
                    log.exception("reconciling pod %s (retrying in %.0fs)", uid, delay)
                self.queue.add_after(uid, delay)
            finally:
                self.queue.done(uid)

    def reconcile(self, uid: str) -> None:
        with self.lock:
            pod = self.pods.get(uid)
            ps = self.states.get(uid)
        if pod is None:
            if ps is not None:
                self._forget(ps)
            return
        if ps is None:
            phase = (pod.get("status") or {}).get("phase", "Pending")
            if phase in ("Succeeded", "Failed"):
                return
            if pod["metadata"].get("deletionTimestamp"):
                self._delete_now(pod)
                return
            if phase == "Running":
                self._fail_lost(pod)
                return
            ps = PodState(
                uid,
                pod["metadata"]["namespace"],
                pod["metadata"]["name"],
                self.pods_root / runtime.pod_dir_name(pod["metadata"]["namespace"], pod["metadata"]["name"], uid),
            )
            with self.lock:
                self.states[uid] = ps
        with ps.lock:
            self._sync(pod, ps)

    def _sync(self, pod: Json, ps: PodState) -> None:
        phase = (pod.get("status") or {}).get("phase", "Pending")
        if ps.adopted and not ps.containers and not self._bind_adopted(pod, ps):
            ps.adopted = ps.started = False  # the earlier agent died before launching anything: start afresh
        if pod["metadata"].get("deletionTimestamp"):
            self._sync_deletion(pod, ps)
            return
        if phase in ("Succeeded", "Failed") and ps.last_posted is None:
            # terminal before we did anything (or failed by someone else): make sure nothing runs
            for c in ps.running():
                assert c.proc is not None
                c.proc.signal(signal.SIGKILL)
            return
        if not ps.started:
            if ps.override is None:
                self._start(pod, ps)
            else:
                self._post(pod, ps)  # failed before starting (ErrImagePull, unsupported): report only
            return
        self._collect(pod, ps)
        self._restart_due(pod, ps)
        self._post(pod, ps)

    # ------------------------------------------------------------------ start

    def _start(self, pod: Json, ps: PodState) -> None:
        spec = pod["spec"]
        try:
            if spec.get("initContainers"):
                raise Fatal("NodeAgentUnsupported", "init containers are not supported by the local node agent")
            with self.lock:
                active = sum(1 for s in self.states.values() if s.started and s.running())
            if active >= self.s.max_pods:
                raise Fatal(
                    "OutOfpods",
                    f"Node didn't have enough resource: pods, running {active}, allocatable {self.s.max_pods}",
                )
            images: dict[str, ImageSpec] = {}
            for c in spec["containers"]:
                ps.containers.setdefault(c["name"], ContainerState(c["name"], c.get("image", ""), c))
                image = self.s.images.resolve(c.get("image", ""))
                if image is None:
                    self._fail_image(pod, ps, c)
                    return
                images[c["name"]] = image
            if spec.get("activeDeadlineSeconds") is not None:
                ps.deadline = ps.start_time + float(spec["activeDeadlineSeconds"])
            launches = self._prepare(pod, ps, images)
        except Fatal as exc:
            ps.override = ("Failed", exc.reason, exc.message)
            for cs in ps.containers.values():
                cs.waiting_reason, cs.waiting_message = "CreateContainerError", exc.message
            self._post(pod, ps)
            log.warning("pod %s/%s failed: %s", ps.namespace, ps.name, exc.message)
            return
        except ConfigError as exc:
            reason = "ContainerCreating" if isinstance(exc, VolumePending) else "CreateContainerConfigError"
            for cs in ps.containers.values():
                cs.waiting_reason, cs.waiting_message = reason, str(exc)
            self._post(pod, ps)
            self.queue.add_after(ps.uid, CONFIG_RETRY)
            return
        for name, launch in launches.items():
            cs = ps.containers[name]
            self._launch(ps, cs, launch)
        ps.started = True
        self._collect(pod, ps)
        self._post(pod, ps)

    def _launch(self, ps: PodState, cs: ContainerState, launch: LaunchSpec) -> None:
        cs.launch = launch
        cs.restart_at = None
        path = cs.spec.get("terminationMessagePath") or "/dev/termination-log"
        try:
            cs.proc = runtime.launch(ps.dir / "containers" / cs.name, cs.restart_count, launch, path)
            log.info("started %s/%s container %s (pid %d)", ps.namespace, ps.name, cs.name, cs.proc.pid)
        except runtime.RuntimeError_ as exc:
            now = time.time()
            cs.terminated = Terminated(128, "StartError", str(exc), now, now)

    def _prepare(self, pod: Json, ps: PodState, images: dict[str, ImageSpec]) -> dict[str, LaunchSpec]:
        psc = pod["spec"].get("securityContext") or {}
        owner = Ownership(uid=psc.get("runAsUser"), gid=psc.get("runAsGroup"), fs_group=psc.get("fsGroup"))
        lookups: dict[tuple[str, str, str], dict[str, bytes] | None] = {}

        def lookup(kind: str, namespace: str, name: str) -> dict[str, bytes] | None:
            key = (kind, namespace, name)
            if key not in lookups:
                lookups[key] = self._get_data(kind, namespace, name)
            return lookups[key]

        def token(sa: str, audience: str, expiration: int) -> str:
            return self._token(pod, sa, audience, expiration)

        try:
            volumes = materialize(pod, ps.dir, lookup, token, owner)
        except UnsupportedVolume as exc:
            raise Fatal("NodeAgentUnsupported", str(exc)) from exc
        alloc = {"cpu": str(os.cpu_count() or 1), "memory": str(psutil.virtual_memory().total)}
        service_env = {
            "KUBERNETES_SERVICE_HOST": self.api_host,
            "KUBERNETES_SERVICE_PORT": str(self.api_port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(self.api_port),
            "KUBERNETES_PORT": f"tcp://{self.api_host}:{self.api_port}",
            "KUBERNETES_PORT_443_TCP": f"tcp://{self.api_host}:{self.api_port}",
            "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
            "KUBERNETES_PORT_443_TCP_PORT": str(self.api_port),
            "KUBERNETES_PORT_443_TCP_ADDR": self.api_host,
        }
        out: dict[str, LaunchSpec] = {}
        for c in pod["spec"]["containers"]:
            image = images[c["name"]]
            env = container_env(
                pod,
                c,
                lookup,
                host_ip=status.HOST_IP,
                pod_ip=status.HOST_IP,
                service_env=service_env,
                node_allocatable=alloc,
            )
            argv = container_argv(image.argv(c.get("command"), c.get("args")), env)
            if not argv:
                raise Fatal(
                    "NodeAgentUnsupported",
                    f"container {c['name']}: no command: the image mapping for "
                    f"{image.repository} has no entrypoint and the pod gives none",
                )
            full_env = {"PATH": STANDARD_PATH, **image.env, "HOSTNAME": pod["spec"].get("hostname") or ps.name, **env}
            csc = c.get("securityContext") or {}
            uid = csc.get("runAsUser", psc.get("runAsUser", image.user))
            gid = csc.get("runAsGroup", psc.get("runAsGroup"))
            if gid is None and uid is not None:
                gid = _primary_gid(int(uid))  # as a runtime does: the user's group, else 0
            if csc.get("runAsNonRoot", psc.get("runAsNonRoot")) and (uid is None or uid == 0):
                raise ConfigError(
                    f'container has runAsNonRoot and image will run as root (pod: "{ps.name}_'
                    f'{ps.namespace}({ps.uid})", container: {c["name"]})'
                )
            groups = [int(g) for g in psc.get("supplementalGroups") or []]
            if psc.get("fsGroup") is not None:
                groups.append(int(psc["fsGroup"]))
            limit = ((c.get("resources") or {}).get("limits") or {}).get("memory")
            ps.containers[c["name"]].memory_limit = int(parse_quantity(limit)) if limit else None
            out[c["name"]] = LaunchSpec(
                argv=argv,
                env=full_env,
                mounts=container_mounts(c, volumes, env),
                working_dir=c.get("workingDir") or image.working_dir or "/",
                uid=None if uid is None else int(uid),
                gid=None if gid is None else int(gid),
                groups=groups,
                no_new_privs=csc.get("allowPrivilegeEscalation") is False,
                read_only_root=bool(csc.get("readOnlyRootFilesystem")),
                hostname=pod["spec"].get("hostname") or ps.name,
                expose=tuple(
                    sorted({*runtime.python_runtime_paths(), *runtime.command_paths(argv[0], full_env["PATH"])})
                ),
            )
        return out

    def _get_data(self, kind: str, namespace: str, name: str) -> dict[str, bytes] | None:
        resource = "secrets" if kind == "secret" else "configmaps"
        try:
            return b64_data(self.kube.get(f"/api/v1/namespaces/{namespace}/{resource}/{name}"))
        except KubeError as exc:
            if exc.not_found:
                return None
            if exc.status == 403:
                # the Node authorizer learns about a new pod's references a moment after it is bound
                raise VolumePending(f"{kind} {namespace}/{name}: {exc.message} (retrying)") from exc
            raise

    def _token(self, pod: Json, sa: str, audience: str, expiration: int) -> str:
        body: Json = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else None,
                "expirationSeconds": max(600, expiration),
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": pod["metadata"]["name"],
                    "uid": pod["metadata"]["uid"],
                },
            },
        }
        ns = pod["metadata"]["namespace"]
        try:
            result = self.kube.post(f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token", body)
        except KubeError as exc:
            if exc.not_found or exc.status == 403:
                raise VolumePending(f"service account token for {ns}/{sa}: {exc.message} (retrying)") from exc
            raise
        return str(result["status"]["token"])

    def _fail_image(self, pod: Json, ps: PodState, container: Json) -> None:
        """An image the agent cannot run. A pod with restartPolicy Always (a Deployment's, a
        StatefulSet's) waits in ImagePullBackOff, Pending, as under a kubelet: failing it would make
        its ReplicaSet replace it in a loop. Other pods (Jobs') fail with ErrImagePull, so a Job
        does not hang on an image that never comes."""
        message = self.s.images.pull_error(container.get("image", ""))
        waits = pod["spec"].get("restartPolicy", "Always") == "Always"
        reason = "ImagePullBackOff" if waits else "ErrImagePull"
        for c in pod["spec"]["containers"]:
            ps.containers.setdefault(c["name"], ContainerState(c["name"], c.get("image", ""), c))
        for cs in ps.containers.values():
            if cs.name == container["name"]:
                cs.waiting_reason, cs.waiting_message = reason, message
        ps.override = ("Pending", None, None) if waits else ("Failed", "ErrImagePull", message)
        self._post(pod, ps)
        log.warning("pod %s/%s: %s", ps.namespace, ps.name, message)

    # ------------------------------------------------------- running / exited

    def _collect(self, pod: Json, ps: PodState) -> None:
        """Turn exited processes into terminated states; schedule restarts per restartPolicy."""
        policy = pod["spec"].get("restartPolicy", "Always")
        for cs in ps.containers.values():
            proc = cs.proc
            if proc is None or cs.terminated is not None or cs.restart_at is not None or not proc.exited():
                continue
            info = proc.exit_info()
            term_file = b""
            try:
                term_file = proc.termination_log.read_bytes()[: status.MAX_MESSAGE_BYTES]
            except OSError:
                pass
            reason = status.terminated_reason(
                info.exit_code, oom_killed=info.kill_reason == "OOMKilled", start_error=bool(info.start_error)
            )
            message = status.termination_message(
                term_file, cs.spec.get("terminationMessagePolicy"), info.exit_code, runtime.log_tail(proc.log_path)
            )
            if info.start_error:
                message = info.start_error
            if info.kill_reason == "Unknown":
                reason, message = "ContainerStatusUnknown", LOST_MESSAGE
            terminated = Terminated(
                info.exit_code, reason, message, info.started_at, info.finished_at, f"nodeagent://{proc.pid}"
            )
            log.info("%s/%s container %s exited: %d %s", ps.namespace, ps.name, cs.name, info.exit_code, reason)
            restart = (
                not ps.terminating
                and ps.override is None
                and cs.launch is not None
                and (policy == "Always" or (policy == "OnFailure" and info.exit_code != 0))
            )
            if restart:
                delay = min(self.s.restart_backoff * (2**cs.restart_count), self.s.max_restart_backoff)
                cs.last_terminated = terminated
                cs.restart_at = time.time() + delay
                cs.waiting_reason = "CrashLoopBackOff"
                cs.waiting_message = f"back-off {delay:.0f}s restarting failed container={cs.name} pod={ps.name}"
                self.queue.add_after(ps.uid, delay)
            else:
                cs.terminated = terminated

    def _restart_due(self, pod: Json, ps: PodState) -> None:
        now = time.time()
        for cs in ps.containers.values():
            if cs.restart_at is not None and now >= cs.restart_at and cs.launch is not None:
                if ps.terminating or ps.override is not None:
                    cs.restart_at = None
                    cs.terminated = cs.last_terminated
                    continue
                cs.restart_count += 1
                self._launch(ps, cs, cs.launch)

    def _post(self, pod: Json, ps: PodState, final_phase: str | None = None) -> None:
        views = ps.views()
        phase, reason, message = ps.override if ps.override else (None, None, None)
        if phase == "Failed" and any(c.running() for c in ps.containers.values()):
            phase = "Running"  # report Failed once the containers are down
        if final_phase and phase is None:
            phase = final_phase
        patch = status.pod_status_patch(
            pod, views, time.time(), phase=phase, reason=reason, message=message, start_time=ps.start_time
        )
        key = status.semantic(patch)
        if key == ps.last_posted:
            return
        patch["metadata"] = {"uid": ps.uid}
        try:
            self.kube.patch(f"/api/v1/namespaces/{ps.namespace}/pods/{ps.name}/status", patch)
            ps.last_posted = key
        except KubeError as exc:
            if exc.not_found or exc.conflict:
                return  # gone, or a new pod with the same name: the watch will tell
            raise

    # ----------------------------------------------------------------- deletion

    def _sync_deletion(self, pod: Json, ps: PodState) -> None:
        running = ps.running()
        if running and not ps.terminating:
            ps.terminating = True
            grace = _grace_seconds(pod)
            ps.kill_at = time.time() + grace
            for cs in running:
                assert cs.proc is not None
                cs.proc.signal(signal.SIGTERM)
            log.info("pod %s/%s deleted: SIGTERM, %.0fs grace", ps.namespace, ps.name, grace)
            return
        if running:
            return  # the supervisor escalates to SIGKILL and requeues when they are gone
        if ps.deletion_sent:
            return
        ps.terminating = True
        self._collect(pod, ps)
        for cs in ps.containers.values():
            if cs.terminated is None and cs.restart_at is not None:
                cs.restart_at = None
                cs.terminated = cs.last_terminated
        derived = status.pod_phase(ps.views(), pod["spec"].get("restartPolicy", "Always"))
        if ps.override is not None and ps.override[0] == "Pending":
            ps.override = None  # waited for an image: deleted, it ends Failed as under a kubelet
        if ps.containers:
            self._post(pod, ps, final_phase=derived if derived in ("Succeeded", "Failed") else "Failed")
        self._delete_now(pod)
        ps.deletion_sent = True

    def _delete_now(self, pod: Json) -> None:
        meta = pod["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": meta["uid"]},
        }
        try:
            self.kube.delete(f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", body)
        except KubeError as exc:
            if not (exc.not_found or exc.conflict):
                raise

    def _forget(self, ps: PodState) -> None:
        """The pod is gone from the API: stop anything left and remove its folder."""
        with ps.lock:
            runtime.terminate([c.proc for c in ps.containers.values() if c.proc is not None], grace=2)
            runtime.remove_pod_dir(ps.dir)
        with self.lock:
            self.states.pop(ps.uid, None)
        log.info("pod %s/%s removed", ps.namespace, ps.name)

    # ---------------------------------------------------------------- adoption

    def adopt(self) -> None:
        """Re-find the pods an earlier agent started (their folders + live processes)."""
        for pdir in runtime.pod_dirs(self.pods_root):
            parsed = runtime.parse_pod_dir_name(pdir.name)
            if parsed is None:
                continue
            namespace, name, uid = parsed
            ps = PodState(uid, namespace, name, pdir, adopted=True, started=True)
            self.states[uid] = ps
            alive = 0
            for cdir in sorted((pdir / "containers").glob("*")):
                proc = runtime.load_container(cdir)
                if proc is not None and not proc.exited():
                    alive += 1
            log.info("adopting pod %s/%s (%d live container processes)", namespace, name, alive)

    def _bind_adopted(self, pod: Json, ps: PodState) -> bool:
        """Rebuild the state of a pod an earlier agent started; False when it launched nothing."""
        if not any(runtime.load_container(ps.dir / "containers" / c["name"]) for c in pod["spec"]["containers"]):
            return False
        st = pod.get("status") or {}
        ps.start_time = status.parse_time(st.get("startTime")) or ps.start_time
        if pod["spec"].get("activeDeadlineSeconds") is not None:
            ps.deadline = ps.start_time + float(pod["spec"]["activeDeadlineSeconds"])
        api_statuses = {c.get("name"): c for c in st.get("containerStatuses") or []}
        for c in pod["spec"]["containers"]:
            cs = ContainerState(c["name"], c.get("image", ""), c)
            limit = ((c.get("resources") or {}).get("limits") or {}).get("memory")
            cs.memory_limit = int(parse_quantity(limit)) if limit else None
            cs.proc = runtime.load_container(ps.dir / "containers" / c["name"])
            api = api_statuses.get(c["name"]) or {}
            cs.restart_count = int(api.get("restartCount") or (cs.proc.attempt if cs.proc else 0))
            if cs.proc is None:
                now = time.time()
                cs.terminated = Terminated(
                    137,
                    "ContainerStatusUnknown",
                    "the container had not started when the node agent restarted",
                    None,
                    now,
                )
            ps.containers[c["name"]] = cs
        # restarting containers (OnFailure/Always) are not restarted after adoption: their launch
        # spec is not persisted; they end with their last exit, which is reported.
        return True

    def _fail_lost(self, pod: Json) -> None:
        """Running per the API, but this agent knows nothing about it: its processes are gone."""
        now = time.time()
        views = [
            ContainerView(
                c["name"],
                c.get("image", ""),
                "terminated",
                terminated=Terminated(137, "ContainerStatusUnknown", LOST_MESSAGE, None, now),
            )
            for c in pod["spec"]["containers"]
        ]
        patch = status.pod_status_patch(
            pod,
            views,
            now,
            phase="Failed",
            reason="NodeAgentLostPod",
            message=f"the node agent on {self.s.node_name} restarted without local state for this pod "
            f"(in {self.pods_root}); its containers are gone",
        )
        patch["metadata"] = {"uid": pod["metadata"]["uid"]}
        try:
            self.kube.patch(
                f"/api/v1/namespaces/{pod['metadata']['namespace']}/pods/{pod['metadata']['name']}/status", patch
            )
        except KubeError as exc:
            if not (exc.not_found or exc.conflict):
                raise

    # ============================================================== supervisor

    def _supervise_loop(self) -> None:
        last_memory = 0.0
        while not self.stopping.wait(self.s.tick):
            try:
                now = time.time()
                check_memory = time.monotonic() - last_memory >= self.s.memory_poll
                if check_memory:
                    last_memory = time.monotonic()
                self._supervise(now, check_memory)
            except Exception:
                log.exception("supervisor")

    def _supervise(self, now: float, check_memory: bool) -> None:
        with self.lock:
            states = list(self.states.values())
        limited: list[tuple[PodState, ContainerState]] = []
        for ps in states:
            if not ps.lock.acquire(blocking=False):
                continue
            try:
                wake = False
                for cs in ps.containers.values():
                    proc = cs.proc
                    if proc is None or cs.terminated is not None or cs.restart_at is not None:
                        continue
                    if proc.exited():
                        wake = True
                    elif cs.memory_limit is not None:
                        limited.append((ps, cs))
                if ps.deadline is not None and ps.override is None and ps.started and now >= ps.deadline:
                    ps.override = ("Failed", "DeadlineExceeded", DEADLINE_MESSAGE)
                    ps.kill_at = now + min(
                        30.0,
                        float(
                            (self.pods.get(ps.uid) or {}).get("spec", {}).get("terminationGracePeriodSeconds", 30) or 0
                        ),
                    )
                    for cs in ps.running():
                        assert cs.proc is not None
                        cs.proc.mark_killed("DeadlineExceeded")
                        cs.proc.signal(signal.SIGTERM)
                    log.info("pod %s/%s exceeded its activeDeadlineSeconds", ps.namespace, ps.name)
                    wake = True
                if ps.kill_at is not None and now >= ps.kill_at:
                    for cs in ps.running():
                        assert cs.proc is not None
                        cs.proc.signal(signal.SIGKILL)
                    ps.kill_at = None
                    wake = True
                if wake:
                    self.queue.add(ps.uid)
            finally:
                ps.lock.release()
        if limited and check_memory:
            tree, rss = runtime.process_table()
            for ps, cs in limited:
                assert cs.proc is not None and cs.memory_limit is not None
                used = cs.proc.rss_bytes(tree, rss)
                if used > cs.memory_limit:
                    log.info(
                        "pod %s/%s container %s uses %d bytes > limit %d: OOMKilled",
                        ps.namespace,
                        ps.name,
                        cs.name,
                        used,
                        cs.memory_limit,
                    )
                    cs.proc.mark_killed("OOMKilled")
                    cs.proc.signal(signal.SIGKILL)
                    self.queue.add(ps.uid)
