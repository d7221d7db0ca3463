"""SQL identifiers from configuration: validated against a strict pattern, then quoted.

Identifiers (table, column and schema names) cannot be bound as query parameters, so they
are the one place where text from the outside reaches SQL. They are never interpolated raw:
a name must match ``[A-Za-z_][A-Za-z0-9_]{0,62}`` and is then double-quoted.
"""

from __future__ import annotations

import re

from forecast_trainer.errors import ConfigError

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def check_identifier(value: str, what: str) -> str:
    """``value`` if it is a plain SQL identifier, else a ConfigError naming ``what``."""
    if not isinstance(value, str) or not _IDENT.fullmatch(value):
        shown = value if isinstance(value, str) and len(value) <= 80 else f"{str(value)[:77]}..."
        raise ConfigError(
            f"{what} {shown!r} is not a valid SQL identifier "
            "(letters, digits and _, not starting with a digit, at most 63 characters)"
        )
    return value


def check_table(value: str, what: str) -> tuple[str | None, str]:
    """Split ``table`` or ``schema.table`` into (schema, table), each validated."""
    parts = value.split(".") if isinstance(value, str) else [value]
    if len(parts) > 2:
        raise ConfigError(f"{what} {value!r} must be 'table' or 'schema.table'")
    if len(parts) == 2:
        return check_identifier(parts[0], what), check_identifier(parts[1], what)
    return None, check_identifier(parts[0], what)


def quote(identifier: str) -> str:
    """Double-quote an (already validated) identifier, doubling embedded quotes as SQL requires."""
    return '"' + identifier.replace('"', '""') + '"'


def qualified(schema: str | None, name: str) -> str:
    """``"schema"."name"`` or ``"name"``."""
    return f"{quote(schema)}.{quote(name)}" if schema else quote(name)
