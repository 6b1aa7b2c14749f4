"""The generative model of the synthetic world: constants and the math shared by generator and truth.

Notation (docs/synthetic-world.md has the full derivation):

* ``theta_i ~ N(0, 1)``: true quality of item ``i``; ``pi_i``: exposure share (Zipf over a latent rank);
* ``p_u, q_i``: taste factors; ``a_ui = p_u . q_i - c`` (scaled so that ``sd(a) = affinity_sd``);
* ``b_u ~ N(0, user_bias_sd^2)``: user leniency;
* latent mean rating ``m_ui = mu + b_u + quality_weight * theta_i + a_ui``;
* a rating is ``r = clip(lo + step * floor((m_ui + eps - lo) / step + 1/2), lo, hi)``,
  ``eps ~ N(0, sigma_r^2)``;
* click: ``P = pos^-eta * sigmoid(beta0 + beta_r z_ui + kappa_{u,d} nov_i + e_{i,t} + e_{u,t})`` with the
  standardised relevance ``z_ui = (m_ui - m_center) / m_scale``, novelty ``nov_i`` (exposure rank
  mapped linearly onto [-1, 1]: the most exposed item -1, the least +1) and appetite
  ``kappa_{u,d} = c_u + A[segment_u, d]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.special import expit, ndtr

from deepcuts.contracts import Daypart, Segment

SEGMENTS: tuple[str, ...] = tuple(s.value for s in Segment)  # new, casual, power
DAYPARTS: tuple[str, ...] = tuple(d.value for d in Daypart)  # morning, afternoon, evening, night
#: Truth users column: the first day index (from the first run date) on which a user can visit; 0 for
#: the history's users, ``k + 2`` for a sign-up who joined on ``start_date + k``.
FIRST_VISIT_DAY = "first_visit_day"


@dataclass(frozen=True)
class WorldModel:
    """Fixed constants of the generative model (not tunables: the world's physics, saved with it)."""

    rating_min: float = 1.0
    rating_max: float = 5.0
    rating_step: float = 1.0
    #: Baseline latent rating, user leniency spread, weight of true quality, taste-affinity spread.
    mu: float = 3.0
    user_bias_sd: float = 0.35
    quality_weight: float = 0.65
    affinity_sd: float = 0.6
    #: ``c`` in ``a_ui = p_u . q_i - c``: centres the affinity on random pairs (set at generation).
    affinity_center: float = 0.0
    #: Rating noise around the latent mean.
    rating_noise_sd: float = 0.75
    #: History choice: ``log w_ui = e_u log pi_i + choice_affinity a_ui + choice_quality theta_i``
    #: (people mostly pick what is exposed and to their taste; quality leaks in only a little).
    choice_affinity: float = 1.2
    choice_quality: float = 0.3
    #: Log-exposure penalty of items with a niche genre (in units of the latent exposure's sd).
    niche_exposure_penalty: float = 0.8
    #: Position bias exponent: examination probability at 1-based position k is ``k^-eta``.
    position_eta: float = 0.7
    click_intercept: float = -2.5
    click_relevance: float = 1.2
    #: Day-to-day noise of an item's and a user's click propensity (logit scale).
    item_day_sd: float = 0.3
    user_day_sd: float = 0.2
    #: Spread of the user's own novelty appetite ``c_u`` around the segment x daypart table.
    appetite_sd: float = 0.35
    #: ``A[segment][daypart]``: novelty appetite by context. Negative: popular hits win; positive: deep cuts.
    appetite: dict[str, tuple[float, float, float, float]] = field(
        default_factory=lambda: {
            "new": (-1.0, -0.7, -0.4, -0.3),
            "casual": (-0.4, -0.2, 0.2, 0.3),
            "power": (0.3, 0.5, 1.1, 0.8),
        }
    )
    #: Mean visits per day (Poisson rate) by segment; weekends multiply it by ``weekend_factor``.
    sessions_per_day: dict[str, float] = field(
        default_factory=lambda: {"new": 0.35, "casual": 0.25, "power": 0.9}
    )
    weekend_factor: float = 1.2
    #: Mean daypart habit per segment (morning, afternoon, evening, night); users draw a Dirichlet
    #: around it with concentration ``daypart_concentration``.
    daypart_habits: dict[str, tuple[float, float, float, float]] = field(
        default_factory=lambda: {
            "new": (0.35, 0.30, 0.25, 0.10),
            "casual": (0.20, 0.25, 0.40, 0.15),
            "power": (0.10, 0.20, 0.45, 0.25),
        }
    )
    daypart_concentration: float = 20.0
    #: Standardisation of the relevance in the click model, measured on random pairs at generation.
    m_center: float = 0.0
    m_scale: float = 1.0

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> WorldModel:
        data = dict(data)
        for key in ("appetite", "daypart_habits"):
            if key in data:
                data[key] = {k: tuple(v) for k, v in data[key].items()}
        return cls(**data)

    # ---------------------------------------------------------------------------- ratings
    @property
    def levels(self) -> npt.NDArray[np.float64]:
        """The rating values: ``rating_min, rating_min + step, ..., rating_max``."""
        n = round((self.rating_max - self.rating_min) / self.rating_step) + 1
        return self.rating_min + self.rating_step * np.arange(n, dtype=np.float64)

    def round_to_scale(self, x: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        """``clip(lo + step * floor((x - lo) / step + 1/2), lo, hi)``: nearest level, halves round up."""
        lo, step = self.rating_min, self.rating_step
        r = lo + step * np.floor((np.asarray(x, dtype=np.float64) - lo) / step + 0.5)
        return np.clip(r, lo, self.rating_max).astype(np.float32)

    def sample_ratings(
        self, m: npt.NDArray[np.floating], rng: np.random.Generator
    ) -> npt.NDArray[np.float32]:
        """One rating per latent mean: ``round_to_scale(m + N(0, rating_noise_sd^2))``."""
        m = np.asarray(m, dtype=np.float64)
        return self.round_to_scale(m + rng.normal(0.0, self.rating_noise_sd, size=m.shape))

    def expected_rating(self, m: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        """Exact mean of :meth:`sample_ratings` for latent mean ``m``.

        ``E[r] = sum_l l * (Phi((u_l - m)/s) - Phi((d_l - m)/s))`` with the level's rounding cell
        ``[d_l, u_l) = [l - step/2, l + step/2)``, open at both ends of the scale.
        """
        m = np.asarray(m, dtype=np.float64)[..., None]
        levels = self.levels
        half = self.rating_step / 2.0
        upper = np.append(levels[:-1] + half, np.inf)
        lower = np.insert(levels[1:] - half, 0, -np.inf)
        s = self.rating_noise_sd
        probs = ndtr((upper - m) / s) - ndtr((lower - m) / s)
        return (probs * levels).sum(axis=-1)

    # ------------------------------------------------------------------------------ clicks
    def examination(self, positions: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Position bias ``k^-eta`` for 1-based positions ``k``."""
        pos = np.asarray(positions, dtype=np.float64)
        if pos.size and (np.isnan(pos).any() or pos.min() < 1):
            raise ValueError("positions are 1-based ranks (>= 1); got a value below 1 or NaN")
        return pos ** (-self.position_eta)

    def attraction(
        self,
        m: npt.NDArray[np.floating],
        appetite: npt.NDArray[np.floating],
        novelty: npt.NDArray[np.floating],
        noise: npt.NDArray[np.floating],
    ) -> npt.NDArray[np.float64]:
        """``sigmoid(beta0 + beta_r (m - m_center) / m_scale + appetite * novelty + noise)``."""
        z = (np.asarray(m, dtype=np.float64) - self.m_center) / self.m_scale
        return expit(self.click_intercept + self.click_relevance * z + appetite * novelty + noise)

    def appetite_table(self) -> npt.NDArray[np.float64]:
        """``A`` as a (segment, daypart) array in :data:`SEGMENTS` x :data:`DAYPARTS` order."""
        return np.array([self.appetite[s] for s in SEGMENTS], dtype=np.float64)
