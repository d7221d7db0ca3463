"""A thin JSON layer over the ``kubernetes`` client's ApiClient: plain dicts in and out.

Tests and benches handle objects as dicts (what the API returns, no model round trip), which keeps
them fast and independent of the generated models. The ApiClient still does what it is good at:
kubeconfig loading (embedded certificates, tokens, exec plugins), TLS and connection pooling.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

Json = dict[str, Any]
Query = dict[str, str | int | bool]

PATCH_TYPES = {
    "strategic": "application/strategic-merge-patch+json",
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
}


class KubeError(Exception):
    """A non-2xx answer from the API server."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.body = body
        self.reason = ""
        self.message = body[:500]
        try:
            parsed = json.loads(body)
            self.reason = str(parsed.get("reason", ""))
            self.message = str(parsed.get("message", self.message))
        except (ValueError, AttributeError):
            pass
        super().__init__(f"{method} {path}: HTTP {status} {self.reason}: {self.message}")

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def gone(self) -> bool:
        return self.status == 410


class Kube:
    """GET/POST/PATCH/DELETE and watch streams against one API server."""

    def __init__(self, kubeconfig: str | None = None, pool_size: int = 32) -> None:
        configuration = k8s_client.Configuration()
        k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        configuration.connection_pool_maxsize = pool_size
        self.configuration = configuration
        self.api = k8s_client.ApiClient(configuration)

    @property
    def server(self) -> str:
        return str(self.configuration.host)

    def _send(
        self,
        method: str,
        path: str,
        query: Query | None,
        body: Any,
        content_type: str,
        timeout: float | tuple[float, float],
    ) -> Any:
        _, url, headers, body, _ = self.api.param_serialize(
            method,
            path,
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        if query:
            params = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in query.items()}
            url += "?" + urlencode(params)
        return self.api.rest_client.request(method, url, headers=headers, body=body, _request_timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = 30,
    ) -> Json:
        response = self._send(method, path, query, body, content_type, timeout)
        data = response.read()
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data or "")
        if not 200 <= int(response.status) <= 299:
            raise KubeError(method, path, int(response.status), text)
        return dict(json.loads(text)) if text else {}

    def get(self, path: str, query: Query | None = None) -> Json:
        return self.request("GET", path, query=query)

    def post(self, path: str, body: Json) -> Json:
        return self.request("POST", path, body=body)

    def put(self, path: str, body: Json) -> Json:
        return self.request("PUT", path, body=body)

    def patch(self, path: str, body: Any, patch_type: str = "strategic") -> Json:
        return self.request("PATCH", path, body=body, content_type=PATCH_TYPES[patch_type])

    def delete(self, path: str, body: Json | None = None) -> Json:
        return self.request("DELETE", path, body=body)

    def watch(self, path: str, query: Query, timeout_seconds: int = 300) -> Iterator[Json]:
        """Events of one watch request; ends when the server closes it (``timeoutSeconds``)."""
        q: Query = {**query, "watch": True, "timeoutSeconds": timeout_seconds, "allowWatchBookmarks": True}
        response = self._send("GET", path, q, None, "application/json", (10, timeout_seconds + 30))
        raw = response.response
        try:
            if not 200 <= int(response.status) <= 299:
                text = raw.read().decode("utf-8", "replace")
                raise KubeError("GET", path, int(response.status), text)
            buffer = b""
            for chunk in raw.stream(65536, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield dict(json.loads(line))
        finally:
            raw.release_conn()
            raw.close()
