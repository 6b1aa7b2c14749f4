"""The synthetic world: a catalog, users and a rating history that need no download, plus the ground
truth (:class:`TruthModel`) that the simulator uses to produce visits, clicks and ratings.

``generate_world(out_dir, settings)`` writes it; ``deepcuts.pipelines.loaders.load_dataset("synthetic",
out_dir)`` reads the catalog and the history as canonical tables; ``TruthModel.load(out_dir)`` reads the
truth. The generative model and its formulas: docs/synthetic-world.md.
"""

from deepcuts.pipelines.world.generate import generate_world
from deepcuts.pipelines.world.model import DAYPARTS, SEGMENTS, WorldModel
from deepcuts.pipelines.world.names import GENRE_NAMES, NICHE_GENRES
from deepcuts.pipelines.world.truth import TruthModel, WorldNotFoundError, cached_truth

__all__ = [
    "DAYPARTS",
    "GENRE_NAMES",
    "NICHE_GENRES",
    "SEGMENTS",
    "TruthModel",
    "WorldModel",
    "WorldNotFoundError",
    "cached_truth",
    "generate_world",
]
