"""Print the requirements of the project's extras, one a line (the images' dependency layer).

    python3 requirements.py pyproject.toml trainer

Installing these before the sources are copied lets a code-only change reuse the dependency layer.
Standard library only: it runs on the bare base image, before any package is installed.
"""

from __future__ import annotations

import sys
import tomllib


def requirements(pyproject: dict[str, object], extras: list[str]) -> list[str]:
    """The project's own dependencies followed by those of each named extra (unknown extras: KeyError)."""
    project = pyproject["project"]
    assert isinstance(project, dict)
    optional = project.get("optional-dependencies", {})
    lines = list(project.get("dependencies", []))
    for extra in extras:
        lines += optional[extra]
    return lines


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: requirements.py PYPROJECT EXTRA...", file=sys.stderr)
        return 2
    with open(argv[0], "rb") as f:
        pyproject = tomllib.load(f)
    print("\n".join(requirements(pyproject, argv[1:])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
