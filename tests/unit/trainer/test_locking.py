from __future__ import annotations

import hashlib

import pytest

from forecast_trainer.locking import KEY_PREFIX, application_name, lock_key_parts, product_lock_key


def test_key_is_a_signed_64_bit_integer_from_sha256_of_prefix_and_schema_product_pair() -> None:
    digest = hashlib.sha256(KEY_PREFIX + b'\0["public","bakery-croissant-001"]').digest()
    assert product_lock_key("public", "bakery-croissant-001") == int.from_bytes(digest[:8], "big", signed=True)
    keys = [product_lock_key("s", f"p-{i}") for i in range(2000)]
    assert all(-(2**63) <= k < 2**63 for k in keys)
    assert any(k < 0 for k in keys) and any(k > 0 for k in keys)
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("public", "p"), ("other", "p")),  # same product, another output schema: another lock
        (("a", "b\0c"), ("a\0b", "c")),  # no two (schema, product) pairs encode alike
        (("a", '","b'), ('a","', "b")),
        (("s", "p"), ("s", "p ")),  # ids are verbatim
    ],
)
def test_different_schema_or_product_gives_a_different_key(a: tuple[str, str], b: tuple[str, str]) -> None:
    assert product_lock_key(*a) != product_lock_key(*b)


@pytest.mark.parametrize("key", [0, 1, -1, 2**63 - 1, -(2**63), 0x1234_5678_9ABC_DEF0])
def test_key_parts_are_what_pg_locks_shows(key: int) -> None:
    classid, objid = lock_key_parts(key)
    assert 0 <= classid < 2**32 and 0 <= objid < 2**32
    assert int.from_bytes((classid << 32 | objid).to_bytes(8, "big"), "big", signed=True) == key


def test_application_name_names_the_trainingjob_and_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTNAME", "nightly-3f2a-xk2p9")
    assert application_name("shop/nightly") == "forecast-trainer shop/nightly nightly-3f2a-xk2p9"
    assert len(application_name("n" * 300)) == 63
    monkeypatch.delenv("HOSTNAME")
    assert application_name(None) == "forecast-trainer"
