"""Thin async wrappers over the Kubernetes client.

The official client is blocking, so every call runs in a worker thread (never on the event
loop). Responses are returned as plain dicts (``_preload_content=False`` + json), which is
several times faster than the client's model classes for large lists.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from trainingjob_operator.api import GROUP, PLURAL, VERSION

SCHEDULE_PLURAL = "trainingschedules"

Obj = dict[str, Any]


class KubeError(Exception):
    """An API call failed; ``status`` is the HTTP status (0 when unknown)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class NotFound(KubeError):
    pass


class Unreachable(KubeError):
    """The API server did not answer (connection refused or reset, timeout): always transient."""

    def __init__(self, message: str) -> None:
        super().__init__(0, message)


TRANSIENT_STATUSES = frozenset({0, 408, 409, 429})


def is_transient(exc: KubeError) -> bool:
    """Worth retrying as is: no answer, a conflict, throttling, or a server-side (5xx) error.
    Any other 4xx (invalid, forbidden, not found) fails the same way again."""
    return exc.status in TRANSIENT_STATUSES or exc.status >= 500


def is_quota_exceeded(exc: KubeError) -> bool:
    """A ResourceQuota refused the create (403 Forbidden, "exceeded quota: ..."): it frees up as
    objects go (a finished Job's TTL), so it is worth retrying later, unlike RBAC or an admission
    webhook's denial (403 too, other messages) or an invalid object (422)."""
    return exc.status == 403 and "exceeded quota" in str(exc)


class Conflict(KubeError):
    """409: AlreadyExists on create, or a stale resourceVersion on update."""


def _raise(exc: ApiException) -> None:
    status = int(exc.status or 0)
    try:
        message = json.loads(exc.body or "{}").get("message") or str(exc.reason)
    except ValueError:
        message = str(exc.reason)
    if status == 404:
        raise NotFound(status, message) from exc
    if status == 409:
        raise Conflict(status, message) from exc
    raise KubeError(status, message) from exc


def foreground_delete(uid: str = "") -> Obj:
    """DeleteOptions (a plain dict): foreground propagation, and a uid precondition when given."""
    return {"propagationPolicy": "Foreground", **({"preconditions": {"uid": uid}} if uid else {})}


def load_client() -> client.ApiClient:
    """In-cluster credentials when in a pod, else KUBECONFIG / ~/.kube/config."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    cfg = client.Configuration.get_default_copy()
    cfg.retries = 3
    cfg.connection_pool_maxsize = 32  # concurrent calls from worker threads share this pool
    return client.ApiClient(cfg)


class Kube:
    """The few API calls the operator makes, each in a thread."""

    def __init__(self, api: client.ApiClient, request_timeout: float = 30.0) -> None:
        self.api = api
        self.timeout = request_timeout
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.coord = client.CoordinationV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.writes = 0

    async def _call(self, fn: Any, *args: Any, write: bool = False, **kwargs: Any) -> Obj:
        kwargs.setdefault("_preload_content", False)
        kwargs.setdefault("_request_timeout", self.timeout)

        def run() -> Obj:
            try:
                resp = fn(*args, **kwargs)
            except ApiException as exc:
                _raise(exc)
            except (Urllib3Error, OSError) as exc:
                # urllib3's MaxRetryError, ProtocolError, timeouts...: the API server is away.
                raise Unreachable(f"API server unreachable: {type(exc).__name__}: {exc}"[:500]) from exc
            data = resp.data
            return json.loads(data) if data else {}

        if write:
            self.writes += 1
        return await asyncio.to_thread(run)

    # -- TrainingJobs
    async def get_trainingjob(self, namespace: str, name: str) -> Obj:
        return await self._call(self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name)

    async def patch_trainingjob_status(self, namespace: str, name: str, status: Obj) -> Obj:
        return await self._call(
            self.custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": status},
            write=True,
        )

    async def list_trainingjobs(self, namespace: str, label_selector: str) -> list[Obj]:
        out = await self._call(
            self.custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, label_selector=label_selector
        )
        return list(out.get("items") or [])

    async def create_trainingjob(self, namespace: str, body: Obj) -> Obj:
        return await self._call(
            self.custom.create_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, body, write=True
        )

    async def delete_trainingjob(self, namespace: str, name: str, uid: str = "") -> None:
        """Foreground, with a uid precondition (never a newer object of the same name)."""
        body = foreground_delete(uid)
        try:
            await self._call(
                self.custom.delete_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                body=body,
                write=True,
            )
        except (NotFound, Conflict):
            pass

    # -- TrainingSchedules
    async def get_schedule(self, namespace: str, name: str) -> Obj:
        return await self._call(
            self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, SCHEDULE_PLURAL, name
        )

    async def patch_schedule_status(self, namespace: str, name: str, status: Obj) -> Obj:
        return await self._call(
            self.custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            SCHEDULE_PLURAL,
            name,
            {"status": status},
            write=True,
        )

    # -- Jobs and pods
    async def list_jobs(self, namespace: str, label_selector: str) -> list[Obj]:
        out = await self._call(self.batch.list_namespaced_job, namespace, label_selector=label_selector)
        return list(out.get("items") or [])

    async def create_job(self, namespace: str, body: Obj) -> Obj:
        return await self._call(self.batch.create_namespaced_job, namespace, body, write=True)

    async def patch_job(self, namespace: str, name: str, patch: Obj) -> Obj:
        return await self._call(self.batch.patch_namespaced_job, name, namespace, patch, write=True)

    async def get_job(self, namespace: str, name: str) -> Obj:
        return await self._call(self.batch.read_namespaced_job, name, namespace)

    async def delete_job(self, namespace: str, name: str, uid: str = "") -> None:
        """Delete in the foreground (the Job stays, unfinished, until its pods are gone, so nobody
        launches its product meanwhile), only if it is still the Job with ``uid`` when given."""
        body = foreground_delete(uid)
        try:
            await self._call(self.batch.delete_namespaced_job, name, namespace, body=body, write=True)
        except (NotFound, Conflict):
            pass  # gone already, or another Job of that name now

    async def create_configmap(self, namespace: str, body: Obj) -> Obj:
        return await self._call(self.core.create_namespaced_config_map, namespace, body, write=True)

    async def list_pods(self, namespace: str, label_selector: str, field_selector: str | None = None) -> list[Obj]:
        extra: dict[str, Any] = {"field_selector": field_selector} if field_selector else {}
        out = await self._call(self.core.list_namespaced_pod, namespace, label_selector=label_selector, **extra)
        return list(out.get("items") or [])

    # -- Leases
    async def list_leases(self, namespace: str, label_selector: str) -> list[Obj]:
        out = await self._call(self.coord.list_namespaced_lease, namespace, label_selector=label_selector)
        return list(out.get("items") or [])

    async def get_lease(self, namespace: str, name: str) -> Obj:
        return await self._call(self.coord.read_namespaced_lease, name, namespace)

    async def create_lease(self, namespace: str, body: Obj) -> Obj:
        return await self._call(self.coord.create_namespaced_lease, namespace, body, write=True)

    async def replace_lease(self, namespace: str, name: str, body: Obj) -> Obj:
        return await self._call(self.coord.replace_namespaced_lease, name, namespace, body, write=True)

    async def patch_lease(self, namespace: str, name: str, patch: Obj) -> Obj:
        return await self._call(self.coord.patch_namespaced_lease, name, namespace, patch, write=True)

    async def delete_lease(self, namespace: str, name: str, resource_version: str | None = None) -> None:
        # A plain dict: the client's model classes copy the whole client configuration per instance.
        body = {"preconditions": {"resourceVersion": resource_version}} if resource_version else {}
        try:
            await self._call(self.coord.delete_namespaced_lease, name, namespace, body=body, write=True)
        except NotFound:
            pass
