"""containerd's ``ctr events`` lines, as bench/chaos_bench.py reads trainer runs from them."""

from __future__ import annotations

import pytest

from localcluster.containerd import parse_event

START = '2026-12-07 04:05:52.996177026 +0000 UTC k8s.io /tasks/start {"container_id":"3b90f2","pid":20572}'
EXIT_0 = (
    "2026-12-07 04:05:49.475154921 +0000 UTC k8s.io /tasks/exit "
    '{"container_id":"81a109","id":"81a109","pid":18194,"exited_at":"2026-12-07T04:05:49.47510723Z"}'
)
EXIT_137 = (
    "2026-12-07 04:05:51.655862542 +0000 UTC k8s.io /tasks/exit "
    '{"container_id":"3c6fbc","id":"3c6fbc","pid":18140,"exit_status":137}'
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (START, ("2026-12-07 04:05:52.996177026", "/tasks/start", {"container_id": "3b90f2", "pid": 20572})),
        (
            EXIT_0,  # a zero exit status is left out of the event
            (
                "2026-12-07 04:05:49.475154921",
                "/tasks/exit",
                {"container_id": "81a109", "id": "81a109", "pid": 18194, "exited_at": "2026-12-07T04:05:49.47510723Z"},
            ),
        ),
        (
            EXIT_137,
            (
                "2026-12-07 04:05:51.655862542",
                "/tasks/exit",
                {"container_id": "3c6fbc", "id": "3c6fbc", "pid": 18140, "exit_status": 137},
            ),
        ),
        ("ctr: failed to dial", None),
        ("2026-12-07 04:05:51.6 +0000 UTC k8s.io /tasks/exit {not json", None),
    ],
)
def test_parse_event(line: str, expected: object) -> None:
    assert parse_event(line) == expected
