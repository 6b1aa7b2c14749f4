"""Item-based collaborative filtering: EASE^R where the catalog fits in memory, shrunk cosine otherwise.

Both learn an item x item weight matrix ``B`` and score a user by ``score(u, .) = x_u B`` where ``x_u`` is
the user's binary history row.

**EASE^R** (Steck, 2019): ``B = argmin ||X - X B||^2 + lambda ||B||^2`` subject to ``diag(B) = 0``, in
closed form ``P = (X^T X + lambda I)^-1``, ``B_ij = -P_ij / P_jj`` (``i != j``), ``B_jj = 0``. It needs a
dense ``items x items`` inverse: O(items^3) time and ~3 dense float64 copies in memory, so it is used
only when ``n_items <= ease_max_items`` (8000 items -> ~1.5 GB peak). On the ML-100k split it is the
strongest arm (nDCG@10 0.484 at lambda = 300 vs 0.408 for the best shrunk cosine), hence the default.

**Shrunk cosine** top-k (Sarwar et al., 2001; shrinkage as in Koren, 2008): with co-occurrence counts
``c_ij = (X^T X)_ij`` and item norms ``n_i = sqrt(c_ii)``,
``s_ij = c_ij / (n_i n_j + h)`` for ``i != j``; each row keeps its ``neighbours`` largest entries. The
similarity is computed blockwise (``block_items`` rows of ``X^T X`` at a time, each a sparse product
turned dense for one block only) and stored sparse, so memory is ``O(block_items x items + items x k)``
whatever the catalog size (27k items on MovieLens-latest).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp

# at import time, not inside ease_weights: blas_threads (threadpoolctl) caps only the BLAS libraries
# loaded when it is entered, and scipy.linalg loads scipy's own OpenBLAS; imported inside the fit, the
# inverse ran multi-threaded and its float32 weights changed bytes
from scipy.linalg import lapack

from deepcuts.models.recommenders.base import FloatArray, IntArray, InteractionMatrix, Recommender
from deepcuts.settings import ItemCFSettings


def symmetric_from_lower(P: np.ndarray) -> np.ndarray:
    """The symmetric matrix of ``P``'s lower triangle (diagonal included), C-ordered: the values of
    ``np.tril(P) + np.tril(P, -1).T`` in one pass instead of two masked copies and a sum (~3x the CPU
    at 3,706 items). Adding ``+0.0`` keeps that sum's one effect on the values, -0.0 -> +0.0, so the
    EASE^R weights keep their bytes."""
    out = np.where(np.tri(P.shape[0], dtype=bool), P, P.T)
    out += out.dtype.type(0.0)
    return out


def ease_weights(X: sp.spmatrix, lam: float) -> FloatArray:
    """Closed-form EASE^R item-item weights ``B`` (dense, zero diagonal) for a binary matrix ``X``."""
    if lam <= 0:
        raise ValueError(f"EASE lambda must be > 0 (got {lam}); set arms.item_cf.ease_lambda")
    gram = np.asarray((X.T @ X).toarray(), dtype=np.float32)
    gram[np.diag_indices_from(gram)] += lam
    # X^T X + lambda I is symmetric positive definite: invert it through its Cholesky factor
    # (potrf + potri, ~n^3 flops, in float32: about 4x less work than a float64 LU inverse).
    factor, info = lapack.spotrf(gram, lower=1, overwrite_a=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: X^T X + {lam} I is not positive definite (potrf info={info})")
    P, info = lapack.spotri(factor, lower=1, overwrite_c=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: inverse failed (potri info={info})")
    P = symmetric_from_lower(P)  # potri fills the lower triangle only
    # -P / diag, negated and divided in place (the same operations, without a copy of P)
    diag = np.diag(P).copy()
    np.negative(P, out=P)
    P /= diag[None, :]
    np.fill_diagonal(P, 0.0)
    return P.astype(np.float32, copy=False)


def topk_block(block: np.ndarray, start: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices, column indices and values of the top-``k`` positive entries of each row of a block.

    ``block`` holds rows ``start .. start + len(block) - 1`` of an item x item matrix.
    """
    k = min(k, block.shape[1])
    if k <= 0:
        empty = np.empty(0, np.int64)
        return empty, empty, np.empty(0, block.dtype)
    part = np.argpartition(-block, k - 1, axis=1)[:, :k]
    part_vals = np.take_along_axis(block, part, axis=1)
    keep = part_vals > 0
    r = np.broadcast_to(np.arange(start, start + block.shape[0])[:, None], part.shape)
    return r[keep], part[keep], part_vals[keep]


def assemble_sparse(pieces: list[tuple[np.ndarray, np.ndarray, np.ndarray]], n_items: int) -> sp.csr_matrix:
    """One float32 CSR item x item matrix from ``topk_block`` pieces."""
    if not pieces:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    rows, cols, vals = (np.concatenate(x) for x in zip(*pieces, strict=True))
    out = sp.csr_matrix((vals.astype(np.float32), (rows, cols)), shape=(n_items, n_items))
    out.sort_indices()
    return out


def blockwise_topk(
    left: sp.csr_matrix,
    right: sp.csr_matrix,
    neighbours: int,
    block_items: int,
    finish: Callable[[np.ndarray, int, int], np.ndarray],
) -> sp.csr_matrix:
    """Sparse item x item matrix of the top ``neighbours`` per row of ``finish(left @ right)``.

    ``left @ right`` is computed ``block_items`` rows at a time, so only one dense block is alive;
    ``finish(block, start, stop)`` turns the products of rows ``start:stop`` into scores (it may work in
    place), the diagonal is zeroed and each row keeps its top ``neighbours`` positive scores.
    """
    n_items = left.shape[0]
    k = max(0, min(neighbours, n_items - 1))
    pieces = []
    for start in range(0, n_items, block_items):
        stop = min(start + block_items, n_items)
        block = finish((left[start:stop] @ right).toarray(), start, stop)
        block[np.arange(stop - start), np.arange(start, stop)] = 0.0
        pieces.append(topk_block(block, start, k))
    return assemble_sparse(pieces, n_items)


def shrunk_cosine_topk(
    X: sp.spmatrix, neighbours: int, shrinkage: float, block_items: int = 1024
) -> sp.csr_matrix:
    """Sparse item x item shrunk-cosine similarity keeping the top ``neighbours`` per row.

    ``s_ij = c_ij / (n_i n_j + shrinkage)``, zero diagonal; entries <= 0 are dropped.
    """
    # The right operand stays CSR: scipy multiplies CSR by CSR and would convert a CSC operand on
    # every block (at 20M ratings that conversion cost more than the products). Each output entry
    # sums the same terms in the same order (the left row's order) either way, so the values are equal.
    Xr = sp.csr_matrix(X, dtype=np.float32)
    norms = np.sqrt(np.asarray(Xr.multiply(Xr).sum(axis=0), dtype=np.float64).ravel())

    def shrunk_cosine(co: np.ndarray, start: int, stop: int) -> np.ndarray:
        return co.astype(np.float64) / (norms[start:stop, None] * norms[None, :] + shrinkage + 1e-12)

    return blockwise_topk(Xr.T.tocsr(), Xr, neighbours, block_items, shrunk_cosine)


class ItemCFRecommender(Recommender):
    """Item-item model ``x_u B``; ``B`` from EASE^R (small catalogs) or top-k shrunk cosine."""

    name = "item_cf"
    uses_preference = True
    config: ItemCFSettings

    def __init__(self, config: ItemCFSettings | None = None, seed: int = 42, batch_users: int = 1024) -> None:
        super().__init__(config or ItemCFSettings(), seed, batch_users)
        self.method_: str | None = None
        self.weights_: FloatArray | sp.csr_matrix | None = None

    def _fit(self, data: InteractionMatrix, items: pd.DataFrame) -> None:
        X = data.weighted(getattr(self, "preference", None))
        method = self.config.method
        if method == "auto":
            method = "ease" if data.n_items <= self.config.ease_max_items else "cosine"
        if method == "ease":
            self.weights_ = ease_weights(X, self.config.ease_lambda)
        else:
            self.weights_ = shrunk_cosine_topk(
                X, self.config.neighbours, self.config.shrinkage, self.config.block_items
            )
        self.method_ = method

    def _score(self, user_rows: IntArray) -> FloatArray:
        assert self.data is not None and self.weights_ is not None
        history = self._history_rows(user_rows)
        out = history @ self.weights_
        if sp.issparse(out):
            out = out.toarray()
        return np.asarray(out, dtype=np.float32)
