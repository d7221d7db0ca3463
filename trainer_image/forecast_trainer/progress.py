"""Progress for people (a redrawn bar on a TTY) or machines (JSON lines through the logger)."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from forecast_trainer.logs import get_logger, set_bar_active

log = get_logger("progress")


class Progress:
    """Events of a training run. The base class reports through the logger (JSON or text lines)."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0
        self.started = time.monotonic()

    def start(self, total: int) -> None:
        self.total = total
        self.started = time.monotonic()
        log.info("training %d product(s)", total, extra={"fields": {"event": "run_started", "products": total}})

    def product_started(self, product: str) -> None:
        log.info("training %s", product, extra={"fields": {"event": "product_started", "product": product}})

    def trial(self, product: str, number: int, budget: int) -> None:
        log.debug(
            "trial %d/%d", number, budget, extra={"fields": {"event": "trial", "product": product, "trial": number}}
        )

    def product_done(self, product: str, status: str, fields: dict[str, Any]) -> None:
        self.done += 1
        log.info(
            "%s %s (%d/%d)",
            product,
            status,
            self.done,
            self.total,
            extra={"fields": {"event": "product_done", "product": product, "status": status, **fields}},
        )

    def finish(self) -> None:
        pass


class BarProgress(Progress):
    """A one-line bar on stderr: ``[#####-----] 3/20 products | <product> trial 12/30 | 41s``."""

    WIDTH = 24

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream = stream or sys.stderr
        self.current = ""
        self.detail = ""

    def _draw(self) -> None:
        filled = int(self.WIDTH * self.done / self.total) if self.total else 0
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        elapsed = int(time.monotonic() - self.started)
        name = self.current if len(self.current) <= 40 else self.current[:37] + "..."
        line = f"[{bar}] {self.done}/{self.total} products | {name} {self.detail} | {elapsed}s"
        self.stream.write("\r\x1b[K" + line)
        self.stream.flush()
        set_bar_active(True)

    def start(self, total: int) -> None:
        self.total = total
        self.started = time.monotonic()
        self._draw()

    def product_started(self, product: str) -> None:
        self.current, self.detail = product, "loading"
        self._draw()

    def trial(self, product: str, number: int, budget: int) -> None:
        self.detail = f"trial {number}/{budget}"
        self._draw()

    def product_done(self, product: str, status: str, fields: dict[str, Any]) -> None:
        self.done += 1
        self.detail = status
        self._draw()

    def finish(self) -> None:
        self.stream.write("\r\x1b[K")
        self.stream.flush()
        set_bar_active(False)


def make_progress(log_format: str, stream: TextIO | None = None) -> Progress:
    """A bar for text logs on a terminal, otherwise event lines through the logger."""
    stream = stream or sys.stderr
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return BarProgress(stream) if log_format == "text" and tty else Progress()
