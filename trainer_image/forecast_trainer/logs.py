"""Logging for people and machines: plain text on a terminal, one JSON object per line otherwise.

Also silences the chatter of cmdstanpy, Prophet and Optuna (they log every fit/trial at INFO).
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from datetime import UTC, datetime
from typing import Any, TextIO

LOGGER_NAME = "forecast_trainer"
_NOISY = ("cmdstanpy", "prophet", "prophet.plot", "prophet.models", "prophet.forecaster", "optuna", "matplotlib")


def get_logger(name: str = "") -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...fields}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class _BarAwareHandler(logging.StreamHandler):
    """Clears a progress bar line (if one is drawn) before writing a log line."""

    bar_active = False

    def emit(self, record: logging.LogRecord) -> None:
        if _BarAwareHandler.bar_active:
            self.stream.write("\r\x1b[K")
        super().emit(record)


def effective_format(requested: str, stream: TextIO | None = None) -> str:
    """'json' or 'text' for ``requested`` in auto|json|text (auto: text only on a TTY)."""
    if requested in ("json", "text"):
        return requested
    stream = stream or sys.stderr
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):
        return "json"


def quiet_libraries() -> None:
    """Keep Stan/Prophet/Optuna from logging every fit and trial; must run before they are imported."""
    for name in _NOISY:
        lib = logging.getLogger(name)
        lib.setLevel(logging.CRITICAL if name in ("cmdstanpy", "prophet.plot") else logging.ERROR)
        lib.propagate = name not in ("cmdstanpy", "prophet.plot")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"prophet(\..*)?")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"statsforecast(\..*)?")
    warnings.filterwarnings("ignore", message=".*ExperimentalWarning.*")


def setup_logging(requested: str = "auto", stream: TextIO | None = None, level: int = logging.INFO) -> str:
    """Configure the ``forecast_trainer`` logger on stderr; returns the effective format."""
    stream = stream or sys.stderr
    fmt = effective_format(requested, stream)
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = _BarAwareHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    quiet_libraries()
    return fmt


def set_bar_active(active: bool) -> None:
    _BarAwareHandler.bar_active = active
