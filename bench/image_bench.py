"""Image sizes and the trainer's start-up, a baseline image side by side with a candidate, same run.

  .venv/bin/python bench/image_bench.py --baseline IMAGE --candidate IMAGE [--repeat 5] [--top 12]

IMAGE: an id or reference in the project's podman storage (bash hack/podman.sh images; TJO_CACHE
selects it as for hack/build-images.sh). For each image: its size, `du` of /opt/venv's
site-packages by top-level entry (the largest --top), and, for trainer images, the median over
--repeat runs (alternating baseline and candidate) of
  - `forecast-trainer --help` (the entry point's imports),
  - the trainer's heavy imports as a product's training pays them: pandas, Prophet (lean.py's
    import_prophet), statsforecast's models (lean.py's statsforecast_models),
each in a fresh container as the pod runs it (read-only root, no network).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUN = ["run", "--rm", "--network=none", "--read-only", "--tmpfs=/tmp:rw,mode=1777", "--user=65532:65532"]
IMPORTS = (
    "import time; t = time.perf_counter(); import pandas; "
    "from forecast_trainer.model import import_prophet; import_prophet(); "
    "from forecast_trainer.lean import statsforecast_models; statsforecast_models(); "
    "print(time.perf_counter() - t)"
)
HELP = "import subprocess, time; t = time.perf_counter(); subprocess.run(['forecast-trainer', '--help'], check=True, capture_output=True); print(time.perf_counter() - t)"  # noqa: E501
DU = "cd /opt/venv/lib/python3*/site-packages && du -sk * | sort -rn"


def podman(*args: str) -> str:
    proc = subprocess.run(["bash", str(REPO / "hack" / "podman.sh"), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"podman {' '.join(args[:3])}...: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def seconds(image: str, code: str) -> float:
    return float(podman(*RUN, "--entrypoint=python", image, "-c", code).strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True)
    parser.add_argument("--candidate", required=True)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    images = {"baseline": args.baseline, "candidate": args.candidate}
    info = {k: json.loads(podman("image", "inspect", v))[0] for k, v in images.items()}
    trainer = all("forecast-trainer" in json.dumps(i["Config"].get("Entrypoint")) for i in info.values())
    times: dict[str, dict[str, list[float]]] = {k: {"help": [], "imports": []} for k in images}
    if trainer:
        for _ in range(args.repeat):
            for k, image in images.items():  # alternating, so a change of load hits both alike
                times[k]["help"].append(seconds(image, HELP))
                times[k]["imports"].append(seconds(image, IMPORTS))
    print("| | baseline | candidate |")
    print("|---|---|---|")
    print(f"| image | `{args.baseline}` | `{args.candidate}` |")
    print(f"| size (MB) | {info['baseline']['Size'] / 1e6:.0f} | {info['candidate']['Size'] / 1e6:.0f} |")
    if trainer:
        for what, label in (
            ("help", "`forecast-trainer --help` (s)"),
            ("imports", "pandas + Prophet + statsforecast (s)"),
        ):
            row = " | ".join(f"{statistics.median(times[k][what]):.2f}" for k in images)
            print(f"| {label}, median of {args.repeat} | {row} |")
    for k, image in images.items():
        rows = [line.split("\t") for line in podman(*RUN, "--entrypoint=sh", image, "-c", DU).splitlines()]
        total = sum(int(kb) for kb, _ in rows) / 1024
        print(f"\n{k} site-packages: {total:.0f} MB; the largest: " + ", ".join(
            f"{name} {int(kb) / 1024:.0f}" for kb, name in rows[: args.top]))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
