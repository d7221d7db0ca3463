"""Read-your-writes bookkeeping: a pass may use the watched TrainingJob only once the watch has
delivered the version of our last status write (or of our last read)."""

from __future__ import annotations

from typing import Any

from trainingjob_operator.freshness import WatchedObjects

KEY = ("shop", "weekly")


def body(rv: str, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "weekly", "resourceVersion": rv}, "status": status}


def test_nothing_watched_yet_means_read_the_api() -> None:
    assert WatchedObjects().fresh(KEY) is None


def test_watched_body_is_used_when_nothing_of_ours_is_pending() -> None:
    w = WatchedObjects()
    w.seen(KEY, body("5"))
    assert w.fresh(KEY) == body("5")


def test_after_our_write_the_older_watched_body_is_not_used() -> None:
    w = WatchedObjects()
    w.seen(KEY, body("5"))
    w.known(KEY, body("7", phase="Running"))  # our status write returned version 7
    assert w.fresh(KEY) is None  # the watch still shows 5: it lacks what we wrote
    w.seen(KEY, body("6"))  # an older event (somebody else's write) arrives first
    assert w.fresh(KEY) is None
    w.seen(KEY, body("7", phase="Running"))
    assert w.fresh(KEY) == body("7", phase="Running")
    w.seen(KEY, body("9"))  # anything after our write is newer still
    assert w.fresh(KEY) == body("9")


def test_write_whose_event_arrived_before_its_response_is_not_awaited_forever() -> None:
    w = WatchedObjects()
    w.seen(KEY, body("7", phase="Running"))  # the watch was faster than the HTTP response
    w.known(KEY, body("7", phase="Running"))
    assert w.fresh(KEY) == body("7", phase="Running")


def test_a_read_from_the_api_is_awaited_like_a_write() -> None:
    # After a GET returned version 12, an older event still in flight must not be used.
    w = WatchedObjects()
    w.known(KEY, body("12"))
    w.seen(KEY, body("11"))
    assert w.fresh(KEY) is None
    w.seen(KEY, body("12"))
    assert w.fresh(KEY) == body("12")


def test_relist_that_skipped_our_version_heals_with_one_read() -> None:
    # A re-list after a watch expiry delivers only the newest version (13), never our 12:
    # one GET (returning 13, already seen) ends the wait.
    w = WatchedObjects()
    w.known(KEY, body("12"))
    w.seen(KEY, body("13"))
    assert w.fresh(KEY) is None
    w.known(KEY, body("13"))
    assert w.fresh(KEY) == body("13")


def test_forget_drops_everything() -> None:
    w = WatchedObjects()
    w.seen(KEY, body("5"))
    w.known(KEY, body("6"))
    w.forget(KEY)
    assert w.fresh(KEY) is None
    w.seen(KEY, body("8"))
    assert w.fresh(KEY) == body("8")


def test_a_new_leader_reads_the_api_before_trusting_its_watch() -> None:
    """A standby's watch may lag behind the old leader's last status write (issue 18, point 6): on
    becoming leader nothing watched is fresh until this replica has read the object itself."""
    w = WatchedObjects()
    w.seen(KEY, body("5"))  # what the (lagging) standby's watch shows
    w.distrust_all()
    assert w.fresh(KEY) is None
    w.known(KEY, body("8", phase="Running"))  # the first pass's GET
    assert w.fresh(KEY) is None  # the watch still shows 5
    w.seen(KEY, body("8", phase="Running"))
    assert w.fresh(KEY) == body("8", phase="Running")
