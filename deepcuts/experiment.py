"""Deterministic A/B split by a salted hash of the user id."""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt

from deepcuts.contracts import Variant

_BUCKETS = 10_000


def bucket_of(user_ids: npt.ArrayLike, experiment: str, salt: str) -> npt.NDArray[np.int64]:
    """Stable bucket in [0, 10000) per user: sha256(experiment:salt:user_id) mod 10000.

    A cryptographic hash makes buckets independent of id order and of other experiments' salts;
    it is computed once per user per night, so its cost is irrelevant next to training.
    """
    prefix = f"{experiment}:{salt}:".encode()
    ids = np.asarray(user_ids, dtype=np.int64)
    out = np.empty(ids.shape[0], dtype=np.int64)
    for i, uid in enumerate(ids.tolist()):
        digest = hashlib.sha256(prefix + str(uid).encode()).digest()
        out[i] = int.from_bytes(digest[:8], "big") % _BUCKETS
    return out


def variant_of(
    user_ids: npt.ArrayLike, experiment: str, salt: str, treatment_share: float
) -> npt.NDArray[np.str_]:
    """``"treatment"`` for users whose bucket falls below ``treatment_share``, else ``"control"``."""
    if not 0.0 < treatment_share < 1.0:
        raise ValueError(f"treatment_share must be in (0, 1), got {treatment_share}")
    buckets = bucket_of(user_ids, experiment, salt)
    return np.where(
        buckets < round(treatment_share * _BUCKETS), Variant.TREATMENT.value, Variant.CONTROL.value
    )
