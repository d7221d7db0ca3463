"""Every shell block of the README and docs/*.md is marked run or skip (with a reason), so no
command in the docs escapes tests/e2e/docs/test_docs_run.py without saying why."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.doc_blocks import OWNED_ELSEWHERE, ROOT, MarkError, documents, parse, shell_blocks


def _doc_params() -> list[object]:
    params: list[object] = []
    for path in documents():
        rel = path.relative_to(ROOT).as_posix()
        marks = [pytest.mark.xfail(reason=OWNED_ELSEWHERE[rel], strict=False)] if rel in OWNED_ELSEWHERE else []
        params.append(pytest.param(path, id=rel, marks=marks))
    return params


@pytest.mark.parametrize("path", _doc_params())
def test_every_shell_block_is_marked(path: Path) -> None:
    unmarked = [b.where for b in shell_blocks(path) if b.mark is None]
    marks = "<!-- docs-test: run --> or <!-- docs-test: skip: <why> -->"
    assert unmarked == [], f"shell blocks without {marks}: {unmarked}"


def test_the_readme_tour_runs() -> None:
    """The tour's TrainingJob, its wait and the commands after it are run, not skipped."""
    run = "".join(b.text for b in shell_blocks(ROOT / "README.md") if b.mark == "run")
    for needle in (
        "kind: TrainingJob",
        "bakery-croissant-001",
        "kubectl wait --for=condition=Reconciling=False tj/bakery-tour",
        "training.forecast.dev/retry-failed",
        "--overwrite",
        "kubectl apply -k manifests/overlays/dashboard",
    ):
        assert needle in run, needle


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<!-- docs-test: run -->\n```sh\necho hi\n```\n", [("sh", "run", "", "echo hi\n")]),
        (
            "<!-- docs-test: skip: needs kind -->\n\n```bash\nkind create cluster\n```\n",
            [("bash", "skip", "needs kind", "kind create cluster\n")],
        ),
        ("```sh\nls\n```\n```yaml\na: 1\n```\n", [("sh", None, "", "ls\n"), ("yaml", None, "", "a: 1\n")]),
        # a heredoc inside a block and a longer fence around a shorter one
        (
            "<!-- docs-test: run -->\n````sh\ncat <<'EOF'\n```\nEOF\n````\n",
            [("sh", "run", "", "cat <<'EOF'\n```\nEOF\n")],
        ),
    ],
)
def test_parse_blocks_and_marks(text: str, expected: list[tuple[str, str | None, str, str]]) -> None:
    assert [(b.language, b.mark, b.why, b.text) for b in parse(text, "x.md")] == expected


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("<!-- docs-test: maybe -->\n```sh\nls\n```\n", "not a docs-test mark"),
        ("<!-- docs-test: skip -->\n```sh\nls\n```\n", "must say why"),
        ("<!-- docs-test: run -->\nsome prose\n```sh\nls\n```\n", "right before its block"),
        ("<!-- docs-test: run -->\n", "no block after it"),
    ],
)
def test_malformed_marks_are_errors(text: str, error: str) -> None:
    with pytest.raises(MarkError, match=error):
        parse(text, "x.md")
