"""Product Leases: acquire (create or take over an expired one), renew, release."""

from __future__ import annotations

from datetime import datetime

from trainingjob_operator import builders
from trainingjob_operator.api import TrainingJob
from trainingjob_operator.kube import Conflict, Kube, NotFound
from trainingjob_operator.observe import parse_lease
from trainingjob_operator.observed import ObservedLease


async def acquire(
    kube: Kube, tj: TrainingJob, product: str, now: datetime, duration: int, takeover: ObservedLease | None
) -> bool:
    """True when this TrainingJob holds the product's Lease afterwards.

    Optimistic concurrency does the locking: a create fails with 409 when the Lease exists,
    and a takeover (a replace carrying the observed resourceVersion) fails with 409 when
    anybody renewed or took the Lease since it was observed.
    """
    me = builders.holder_identity(tj)
    body = builders.build_lease(tj, product, now, duration)
    if takeover is None:
        try:
            await kube.create_lease(tj.namespace, body)
            return True
        except Conflict:
            try:
                current = parse_lease(await kube.get_lease(tj.namespace, body["metadata"]["name"]))
            except NotFound:
                return False
            # Ours only if it is this product's: a Lease of another product under the same name
            # (a hash collision) is no lock on this one.
            return current.holder == me and current.product == product
    try:
        old = await kube.get_lease(tj.namespace, takeover.name)
    except NotFound:
        return False
    if old["metadata"].get("resourceVersion") != takeover.resource_version:
        return False  # renewed or taken since we looked: not expired any more
    body["metadata"]["resourceVersion"] = takeover.resource_version
    body["spec"]["leaseTransitions"] = int((old.get("spec") or {}).get("leaseTransitions") or 0) + 1
    try:
        await kube.replace_lease(tj.namespace, takeover.name, body)
    except (Conflict, NotFound):
        return False
    return True


async def renew(kube: Kube, tj: TrainingJob, lease: ObservedLease, now: datetime) -> bool:
    """Move renewTime forward, only if the Lease is still ours at the observed version."""
    patch = {
        "metadata": {"resourceVersion": lease.resource_version},
        "spec": {"renewTime": builders.format_time(now), "holderIdentity": builders.holder_identity(tj)},
    }
    try:
        await kube.patch_lease(tj.namespace, lease.name, patch)
    except (Conflict, NotFound):
        return False
    return True


async def release(kube: Kube, tj: TrainingJob, lease: ObservedLease) -> None:
    """Delete the Lease, only if it is unchanged since observed (so never someone else's)."""
    try:
        await kube.delete_lease(tj.namespace, lease.name, resource_version=lease.resource_version)
    except Conflict:
        pass


async def release_all(kube: Kube, tj: TrainingJob) -> int:
    """Release every product Lease this TrainingJob holds (on deletion). Returns how many."""
    me = builders.holder_identity(tj)
    released = 0
    for raw in await kube.list_leases(tj.namespace, builders.LABEL_PRODUCT_HASH):
        lease = parse_lease(raw)
        if lease.holder == me:
            await release(kube, tj, lease)
            released += 1
    return released


async def release_product(kube: Kube, tj: TrainingJob, product: str) -> None:
    """Release the product's Lease if this TrainingJob holds it (after a launch that did not happen)."""
    try:
        lease = parse_lease(await kube.get_lease(tj.namespace, builders.lease_name(product)))
    except NotFound:
        return
    if lease.holder == builders.holder_identity(tj) and lease.product == product:
        await release(kube, tj, lease)
