"""A no-op "trainer" for orchestration tests and bench/operator_bench.py (image ``localhost/tjo-noop``,
built by hack/build-images.sh on the base image; standard library only). It trains nothing.

It sleeps ``NOOP_SECONDS`` (default 0), then writes a trainer-shaped termination message for
``TRAINER_PRODUCT_ID`` (what the operator sets) and exits 0. ``NOOP_EXIT_CODE`` makes it exit with
that code instead (no report). ``NOOP_CHECK_FILES="path=VAR,..."``: each file must hold exactly
``$VAR`` (volumes and envFrom reached the container); ``NOOP_WRITE_DIR``: the directory must be
writable; otherwise exit 7 (no report). The skipUnchanged check (``unchanged`` among its arguments)
reports nothing unchanged.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

BAD_SETUP = 7


def termination_log() -> str:
    return os.environ.get("TRAINER_TERMINATION_LOG", "/dev/termination-log")


def report(message: dict[str, Any]) -> None:
    try:
        with open(termination_log(), "w") as f:
            json.dump(message, f)
    except OSError:
        pass


def setup_problem() -> str | None:
    """What of NOOP_CHECK_FILES / NOOP_WRITE_DIR did not reach the container, if anything."""
    for check in filter(None, os.environ.get("NOOP_CHECK_FILES", "").split(",")):
        path, var = check.split("=")
        try:
            with open(path) as f:
                held = f.read()
        except OSError:
            held = None
        if held != os.environ.get(var, "\0"):
            return f"{path} does not hold ${var}"
    if os.environ.get("NOOP_WRITE_DIR"):
        try:
            open(os.path.join(os.environ["NOOP_WRITE_DIR"], "probe"), "w").close()
        except OSError as err:
            return str(err)
    return None


def trained(product: str) -> dict[str, Any]:
    result = {
        "product": product,
        "status": "trained",
        "metric": "smape",
        "error": 0.1,
        "baseline_error": 0.2,
        "beats_baseline": True,
        "tuned": False,
        "trials": 0,
    }
    return {
        "v": 1,
        "exit_code": 0,
        "counts": {"trained": 1, "invalid": 0, "failed": 0},
        "products": [result],
        "omitted": 0,
    }


def main(argv: list[str]) -> int:
    if "unchanged" in argv:  # the skipUnchanged check: nothing is unchanged
        report({"v": 1, "kind": "unchanged", "order": "sorted", "unchanged": "", "checked": 0})
        return 0
    problem = setup_problem()
    if problem:
        print(f"noop: {problem}", file=sys.stderr)
        return BAD_SETUP
    time.sleep(float(os.environ.get("NOOP_SECONDS", "0")))
    code = int(os.environ.get("NOOP_EXIT_CODE", "0"))
    if code:
        return code
    report(trained(os.environ.get("TRAINER_PRODUCT_ID", os.environ.get("TRAINER_PRODUCT", ""))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
