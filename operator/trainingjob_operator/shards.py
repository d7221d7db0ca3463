"""Pure shard planning (issue 19, docs/design.md "Scale"): the shard size, a round's indexes R,
its completions, and which global indexes shard k trains.

The global order is the product ids sorted by Python str order; global index i is the position in
it. A round trains R (sorted global indexes) in ``ceil(|R| / S)`` shards: shard k trains
``R[k*S:(k+1)*S]`` (positions 0..n-1 inside the shard).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence, Set

from trainingjob_operator.api import TrainingJob
from trainingjob_operator.status import compress_indexes

AUTO_PER_PRODUCT_MAX = 1000
"""Automatic size: a listed catalogue up to this many products keeps one Job and pod per product (its own
Lease, deadline, logs and retries, as before shards existed): the per-product path still launches 13-17
products/s at 500 products, and falls to 5.6/s at 2,000, where the Job controller and API writes (3.2 per
product) become the bottleneck. Beyond it, shards."""
AUTO_SHARDS_PER_SLOT = 8
"""Automatic size: about this many shards per parallelism slot, so a slow shard at the end of a round
leaves at most ~1/8 of the slots idle, while per-pod start-up (~1 s of imports, a Job pod) is paid once
per ceil(N / (8 P)) products."""
AUTO_MAX_SIZE = 500
"""Automatic size never goes above this: a pod killed mid-shard loses at most its product in progress,
but a pod that never starts (a bad node) holds this many products back until its index is retried."""


def slots_size(count: int, parallelism: int) -> int:
    """About eight shards per parallelism slot: ``clamp(ceil(N / (8 P)), 1, 500)``."""
    return max(1, min(math.ceil(count / (parallelism * AUTO_SHARDS_PER_SLOT)), AUTO_MAX_SIZE))


def auto_size(count: int, parallelism: int) -> int:
    """1 (one pod per product) while N <= 1000 or N <= 8 P; else :func:`slots_size`."""
    if count <= AUTO_PER_PRODUCT_MAX or count <= parallelism * AUTO_SHARDS_PER_SLOT:
        return 1
    return slots_size(count, parallelism)


def shard_size(tj: TrainingJob, count: int) -> int:
    """Products per pod for ``count`` products: spec.productsPerPod, else automatic. Decided once, when
    the TrainingJob starts, and kept in status.shards.size (a later kubectl scale never changes it)."""
    if tj.status.shards is not None:
        return tj.status.shards.size
    if tj.spec.products_per_pod is not None:
        return tj.spec.products_per_pod
    return auto_size(count, tj.spec.parallelism)


def per_product_started(tj: TrainingJob) -> bool:
    """A TrainingJob the per-product path started (before shards existed, or sized 1): it stays there."""
    s = tj.status
    return s.shards is None and bool(s.start_time or s.succeeded_indexes or s.failed_indexes)


def in_shard_mode(tj: TrainingJob) -> bool:
    """allProducts, or more than one product per pod (given, or chosen automatically)."""
    if tj.status.shards is not None or tj.spec.all_products:
        return True
    if per_product_started(tj):
        return False
    return shard_size(tj, len(set(tj.spec.products))) > 1


def products_sha256(products: Iterable[str]) -> str:
    """Hex SHA-256 of the distinct ids sorted (str order) and joined by newlines (UTF-8): the list a
    shard pod verifies before it trains anything (TRAINER_PRODUCTS_SHA256)."""
    return hashlib.sha256("\n".join(sorted(set(products))).encode("utf-8")).hexdigest()


def round_indexes(total: int, recorded: Set[int], held: Set[int] = frozenset()) -> list[int]:
    """R of a new round: the global indexes not on record and not held back (locked, waiting out
    their back-off), sorted."""
    return [i for i in range(total) if i not in recorded and i not in held]


def completions(count: int, size: int) -> int:
    """Shards of a round of ``count`` products."""
    return math.ceil(count / size) if count else 0


def shard_indexes(indexes: Sequence[int], size: int, shard: int) -> list[int]:
    """The global indexes shard ``shard`` trains (``indexes``: the round's R, sorted)."""
    return list(indexes[shard * size : (shard + 1) * size])


def round_id(tj: TrainingJob, retry_round: str, indexes_text: str, size: int, salt: int = 0) -> str:
    """A short hash naming a round: the TrainingJob's uid, its retry-failed value, R and S (and a
    salt when the same R runs again). The same decision twice names the same Job (a repeated create
    is a 409, never a second round)."""
    text = f"{tj.uid}\x00{retry_round}\x00{size}\x00{indexes_text}" + (f"\x00{salt}" if salt else "")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


def round_text(indexes: Iterable[int]) -> str:
    return compress_indexes(indexes)
