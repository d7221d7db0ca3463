"""Typed exceptions. Each carries a CamelCase reason and the process exit code it maps to.

Exit codes (the operator depends on them): 0 trained, 1 unexpected, 2 usage/config error,
3 data invalid (not retriable), 4 infrastructure unavailable after retries (retriable),
5 product locked by another trainer (retry later; nothing was trained or written).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_CONFIG = 2
EXIT_DATA_INVALID = 3
EXIT_INFRA = 4
EXIT_LOCKED = 5


def one_line(text: str, limit: int = 500) -> str:
    """``text`` on a single line (newlines and runs of spaces collapsed), at most ``limit`` chars."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class TrainerError(Exception):
    """Base of every error the trainer raises on purpose."""

    exit_code: int = EXIT_UNEXPECTED
    default_reason: str = "InternalError"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        self.message = one_line(message)
        self.reason = reason or self.default_reason
        super().__init__(self.message)


class ConfigError(TrainerError):
    """A bad option or environment variable: a person has to fix the configuration."""

    exit_code = EXIT_CONFIG
    default_reason = "InvalidConfig"


class DataInvalid(TrainerError):
    """The data of a product (or the whole source) cannot be trained on; retrying cannot help."""

    exit_code = EXIT_DATA_INVALID
    default_reason = "InvalidData"


class InfraUnavailable(TrainerError):
    """A database (or another service) is unreachable after retries; retrying later may help."""

    exit_code = EXIT_INFRA
    default_reason = "DataSourceUnavailable"


class ProductLocked(TrainerError):
    """Another trainer holds the product's lock in the output database: not trained, retry later."""

    exit_code = EXIT_LOCKED
    default_reason = "ProductLocked"


class LockLost(ProductLocked):
    """The product's lock went while it trained (its session ended: a network cut, an idle timeout,
    a failover): training stops and nothing is written; retry later."""


class CircuitOpen(InfraUnavailable):
    """The circuit breaker is open: calls fail fast without touching the service."""


class ModelIntegrityError(TrainerError):
    """A stored model's checksum does not match its JSON: it is refused."""

    default_reason = "ChecksumMismatch"


class TrainingFailed(TrainerError):
    """Prophet/Stan failed to fit a product for a reason that is not the data's fault."""

    default_reason = "FitFailed"
