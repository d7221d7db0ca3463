"""The shell blocks of the README and docs/*.md, and their docs-test marks (README, "The docs are tests").

A fenced block whose info string is ``sh``, ``bash``, ``shell`` or ``console`` is a shell block. The
line right before its opening fence (blank lines between are allowed) carries its mark:

    <!-- docs-test: run -->                 run it as written (tests/e2e/docs/test_docs_run.py)
    <!-- docs-test: skip: <why> -->         not run here; <why> says what the machine lacks

Pure: no cluster, no subprocess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHELL_LANGUAGES = frozenset({"sh", "bash", "shell", "console"})
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
MARK = re.compile(r"^<!--\s*docs-test:\s*(?P<verb>run|skip)(?::\s*(?P<why>.*?))?\s*-->\s*$")
ANY_MARK = re.compile(r"^<!--\s*docs-test\b")

OWNED_ELSEWHERE: dict[str, str] = {
}
"""Docs whose blocks are not marked yet, and why; their blocks are listed but never run."""


@dataclass(frozen=True)
class Block:
    path: str
    """Relative to the checkout, e.g. ``README.md``."""
    line: int
    """1-based line of the opening fence."""
    language: str
    text: str
    mark: str | None
    """``run``, ``skip``, or None (unmarked)."""
    why: str = ""

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


class MarkError(ValueError):
    """A docs-test comment that is not one of the two marks, or a mark with no block after it."""


def documents(root: Path = ROOT) -> list[Path]:
    """README.md, then docs/*.md by name."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def parse(text: str, path: str) -> list[Block]:
    """Every fenced block of a markdown text with its language and the mark before it (shell
    blocks and others alike; the caller picks). Raises MarkError for a malformed mark or one that
    no block follows."""
    lines = text.splitlines()
    blocks: list[Block] = []
    pending: tuple[int, str, str] | None = None  # (line, verb, why) of a mark awaiting its block
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if ANY_MARK.search(stripped):
            m = MARK.match(stripped)
            if m is None:
                raise MarkError(f"{path}:{i + 1}: not a docs-test mark: {stripped!r}")
            if m["verb"] == "skip" and not (m["why"] or "").strip():
                raise MarkError(f"{path}:{i + 1}: a skip mark must say why: <!-- docs-test: skip: <why> -->")
            if pending is not None:
                raise MarkError(f"{path}:{pending[0]}: a docs-test mark with no block after it")
            pending = (i + 1, m["verb"], (m["why"] or "").strip())
            i += 1
            continue
        fence = FENCE.match(line)
        if fence is None:
            if stripped and pending is not None:
                raise MarkError(f"{path}:{pending[0]}: a docs-test mark must be right before its block")
            i += 1
            continue
        opener, info = fence["fence"], fence["info"].strip()
        language = info.split()[0].lower() if info else ""
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(opener):
            body.append(lines[j])
            j += 1
        mark, why = (pending[1], pending[2]) if pending is not None else (None, "")
        blocks.append(Block(path, i + 1, language, "\n".join(body) + "\n", mark, why))
        pending = None
        i = j + 1
    if pending is not None:
        raise MarkError(f"{path}:{pending[0]}: a docs-test mark with no block after it")
    return blocks


def shell_blocks(path: Path, root: Path = ROOT) -> list[Block]:
    rel = path.relative_to(root).as_posix()
    return [b for b in parse(path.read_text(encoding="utf-8"), rel) if b.language in SHELL_LANGUAGES]
