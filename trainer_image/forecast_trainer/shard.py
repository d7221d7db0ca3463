"""Shard mode: which products this process trains (docs/trainer.md, "Shard mode").

The global order is the product ids sorted by Python's str order; global index ``i`` is the
position in it. A round trains the indexes R (``--shard-indexes``, compressed ranges); shard
``k`` of size ``S`` trains ``sorted(R)[k*S:(k+1)*S]``, its positions ``0..n-1`` in that order.

The sorted list comes from a file (``file:<path>``, one id per line, what the operator mounts
from a ConfigMap), from the discovery snapshot (table ``run_products``, read by index: no
DISTINCT over the history per pod) or from the data source itself (trial mode). Whatever the
source, the list must have the digest the operator froze into the Job
(``--products-sha256``): anything else is a configuration error (exit 2), so a pod never
trains products of another list.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from forecast_trainer.config import ShardSettings, TrainConfig
from forecast_trainer.errors import ConfigError

CHANGED_SINCE_DISCOVERY = "the data source's products changed since discovery"


def products_sha256(sorted_ids: Sequence[str]) -> str:
    """Hex SHA-256 of the sorted ids joined by newlines (UTF-8): the digest of a product list."""
    return hashlib.sha256("\n".join(sorted_ids).encode("utf-8")).hexdigest()


def json_products_sha256(sorted_ids: Sequence[str]) -> str:
    """The unchanged check's digest of the same list (sorted distinct ids as compact JSON)."""
    text = json.dumps(list(sorted_ids), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def digest_matches(sorted_ids: Sequence[str], expected: str) -> bool:
    """Whether ``expected`` is the list's digest (the newline form; the unchanged check's JSON form
    is accepted too, so an operator that reuses that digest meets the same list)."""
    return expected in (products_sha256(sorted_ids), json_products_sha256(sorted_ids))


def iter_ranges(text: str) -> Iterator[tuple[int, int]]:
    """(first, last) of each part of ``"0-3,7"`` (already checked by config.to_index_ranges)."""
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        yield int(lo), int(hi or lo)


def shard_indexes(ranges: str, size: int, k: int) -> list[int]:
    """The global indexes of shard ``k``: ``sorted(R)[k*size:(k+1)*size]`` without expanding R."""
    skip, out = k * size, list[int]()
    for first, last in iter_ranges(ranges):
        count = last - first + 1
        if skip >= count:
            skip -= count
            continue
        start = first + skip
        skip = 0
        take = min(last - start + 1, size - len(out))
        out.extend(range(start, start + take))
        if len(out) == size:
            break
    return out


def round_size(ranges: str) -> int:
    return sum(last - first + 1 for first, last in iter_ranges(ranges))


@dataclass(frozen=True)
class Selection:
    """Shard ``k``'s products, in shard order (position ``p`` = ``products[p]``, global ``indexes[p]``)."""

    shard: int
    size: int
    indexes: list[int]
    products: list[str]


def select(shard: ShardSettings, total: int | None) -> list[int]:
    """The shard's global indexes, checked against the round and (when known) the list's length."""
    indexes = shard_indexes(shard.indexes, shard.size, shard.index)
    if not indexes:
        completions = -(-round_size(shard.indexes) // shard.size)
        raise ConfigError(
            f"shard {shard.index} is beyond this round: {round_size(shard.indexes)} indexes in shards of "
            f"{shard.size} make {completions} shard(s)"
        )
    if total is not None and indexes[-1] >= total:
        raise ConfigError(f"shard {shard.index} names index {indexes[-1]}, but the product list has {total} ids")
    return indexes


def check_list(ids: Sequence[str], expected: str, where: str) -> None:
    """A whole sorted list: sorted, distinct and of the expected digest (else ConfigError, exit 2)."""
    if any(ids[i] >= ids[i + 1] for i in range(len(ids) - 1)):
        raise ConfigError(f"the product list in {where} is not sorted and distinct (Python str order)")
    if not digest_matches(ids, expected):
        raise ConfigError(
            f"the product list in {where} ({len(ids)} ids, sha256 {products_sha256(ids)}) does not have the "
            f"digest --products-sha256 {expected}"
        )


def read_file_list(path: str) -> list[str]:
    """One id per line (a trailing newline is allowed); ids are taken verbatim."""
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read the product list {path!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"the product list {path!r} is not UTF-8") from None
    if text.endswith("\n"):
        text = text[:-1]
    return text.split("\n") if text else []


async def select_products(cfg: TrainConfig, source: Any, output: Any) -> Selection:
    """Shard ``k``'s products from ``cfg.shard.products_from`` (module doc); ConfigError on any mismatch."""
    shard = cfg.shard
    assert shard is not None
    where = shard.products_from
    if where.startswith("file:"):
        path = where[len("file:") :]
        ids = read_file_list(path)
        check_list(ids, shard.products_sha256, f"file {path!r}")
        indexes = select(shard, len(ids))
        return Selection(shard.index, shard.size, indexes, [ids[i] for i in indexes])
    if where == "source":
        ids = sorted(set(await source.products()))
        if not digest_matches(ids, shard.products_sha256):
            raise ConfigError(
                f"{CHANGED_SINCE_DISCOVERY} ({len(ids)} products now, sha256 {products_sha256(ids)}; "
                f"the Job expects {shard.products_sha256})"
            )
        indexes = select(shard, len(ids))
        return Selection(shard.index, shard.size, indexes, [ids[i] for i in indexes])
    from forecast_trainer import store

    assert shard.snapshot_key is not None and output is not None
    indexes = select(shard, None)
    count, digest, rows = await store.read_snapshot(output, cfg.output_schema, shard.snapshot_key, indexes)
    if count == 0:
        raise ConfigError(f"no discovered product list in run_products for key {shard.snapshot_key!r}")
    if digest != shard.products_sha256:
        raise ConfigError(
            f"the discovered product list for key {shard.snapshot_key!r} ({count} ids, sha256 {digest}) does not "
            f"have the digest --products-sha256 {shard.products_sha256}"
        )
    if indexes[-1] >= count:
        raise ConfigError(f"shard {shard.index} names index {indexes[-1]}, but the product list has {count} ids")
    missing = [i for i in indexes if i not in rows]
    if missing:
        raise ConfigError(f"the discovered product list for key {shard.snapshot_key!r} has no index {missing[0]}")
    return Selection(shard.index, shard.size, indexes, [rows[i] for i in indexes])
