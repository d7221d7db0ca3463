"""Read-your-writes for the watched TrainingJob: serve a pass from the watch instead of a GET.

A reconcile pass needs the TrainingJob including the status the operator itself wrote last
(folded products live there only). The watch delivers every version of the object in order,
so once the version produced by our last write (or seen by our last read) has arrived, the
newest watched body is at least that new and can be used instead of a GET (a quorum read
from etcd). Until it arrives :meth:`WatchedObjects.fresh` returns None and the caller reads
the API. Resource versions are only compared for equality (they are opaque strings).

Pure bookkeeping, no API calls; keys are ``(namespace, name)``.
"""

from __future__ import annotations

from collections import deque
from typing import Any

Key = tuple[str, str]
Obj = dict[str, Any]


def resource_version(body: Obj) -> str:
    return str((body.get("metadata") or {}).get("resourceVersion") or "")


class WatchedObjects:
    def __init__(self, memory: int = 64) -> None:
        self._latest: dict[Key, Obj] = {}
        # Versions delivered lately: a write's own event may arrive before its response.
        self._recent: dict[Key, deque[str]] = {}
        self._awaited: dict[Key, str] = {}
        self._memory = memory
        self._term = 0
        self._read_in_term: dict[Key, int] = {}

    def distrust_all(self) -> None:
        """This replica just became the leader: its watch (a standby's) may lag behind what the
        previous leader wrote, and a status patch carries no resourceVersion, so a pass served
        from it could write an older record over the newer one. Until the API has been read for
        a key (:meth:`known`), :meth:`fresh` returns None for it."""
        self._term += 1

    def seen(self, key: Key, body: Obj) -> None:
        """The watch delivered ``body`` (call in delivery order)."""
        version = resource_version(body)
        self._latest[key] = body
        self._recent.setdefault(key, deque(maxlen=self._memory)).append(version)
        if self._awaited.get(key) == version:
            del self._awaited[key]

    def known(self, key: Key, body: Obj) -> None:
        """``body`` came from the API (a read, or the response to our write): later passes need it."""
        version = resource_version(body)
        self._read_in_term[key] = self._term
        if version in self._recent.get(key, ()):
            self._awaited.pop(key, None)
        else:
            self._awaited[key] = version

    def fresh(self, key: Key) -> Obj | None:
        """The newest watched body if the watch has caught up with what we know, else None."""
        if key in self._awaited or self._read_in_term.get(key, 0) != self._term:
            return None
        return self._latest.get(key)

    def forget(self, key: Key) -> None:
        self._latest.pop(key, None)
        self._recent.pop(key, None)
        self._awaited.pop(key, None)
        self._read_in_term.pop(key, None)
