from __future__ import annotations

import numpy as np

from deepcuts.experiment import bucket_of, variant_of


def test_split_is_stable_and_close_to_the_share() -> None:
    users = np.arange(20_000)
    first = variant_of(users, "exp", "salt", 0.5)
    again = variant_of(users[::-1], "exp", "salt", 0.5)[::-1]
    assert (first == again).all()
    share = (first == "treatment").mean()
    assert abs(share - 0.5) < 0.015


def test_salt_reshuffles_users() -> None:
    users = np.arange(5_000)
    a = bucket_of(users, "exp", "salt-a")
    b = bucket_of(users, "exp", "salt-b")
    # independent hashes: agreement of halves near 50%, far from 100%
    agree = ((a < 5000) == (b < 5000)).mean()
    assert 0.45 < agree < 0.55


def test_known_bucket() -> None:
    # sha256("exp:salt:1")[:8] as big-endian int, mod 10000 — computed by hand with hashlib
    import hashlib

    expected = int.from_bytes(hashlib.sha256(b"exp:salt:1").digest()[:8], "big") % 10_000
    assert bucket_of([1], "exp", "salt")[0] == expected
