"""The arm registry (deepcuts/arms.py) and ``deepcuts.models.recommenders.registry``: every arm is built from
its entry, and a new arm needs one module, one registry line and (if it has knobs) one settings section."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from deepcuts.arms import ARMS, ArmRole, ArmSpec, arm_names, bandit_arm_names, relevance_arm_names
from deepcuts.contracts import C, Dataset
from deepcuts.models.recommenders.base import FloatArray, IntArray, InteractionMatrix, Preference, Recommender
from deepcuts.models.recommenders.registry import arm_class, arm_config, base_arm, build_recommender
from deepcuts.pipelines.candidates import candidates_shard
from deepcuts.pipelines.score import score_shard
from deepcuts.pipelines.storage import Lake
from deepcuts.pipelines.train import load_model, train_arm
from deepcuts.settings import load_settings
from tests.models.recommenders.test_steps import DAY, write_world
from tests.models.recommenders.world import tiny_settings

DOCS = Path(__file__).resolve().parents[3] / "docs"


class ThrowawayRecommender(Recommender):
    """An 8th arm for the recipe test: score(u, i) = item id, so the lists are known by hand."""

    name = "throwaway"

    def _fit(self, data: InteractionMatrix, items: pd.DataFrame) -> None:
        return None

    def _score(self, user_rows: IntArray) -> FloatArray:
        assert self.data is not None
        ids = self.data.item_ids.astype(np.float32)
        return np.broadcast_to(ids, (user_rows.size, ids.size)).copy()


THROWAWAY = ArmSpec("throwaway", f"{__name__}:ThrowawayRecommender", None, ArmRole.RELEVANCE)


@pytest.mark.parametrize("arm", arm_names())
def test_every_arm_is_built_from_its_entry(arm: str) -> None:
    settings = tiny_settings()
    model = build_recommender(arm, settings, seed=3)
    spec = ARMS[arm]
    assert type(model) is arm_class(arm) and model.name == arm
    assert model.config is (getattr(settings.arms, spec.section) if spec.section else None)
    assert model.config is arm_config(arm, settings)
    assert model.seed == 3 and model.batch_users == settings.arms.batch_users
    if spec.role is ArmRole.DEEP_CUT:
        assert base_arm(arm, settings) == "item_cf"  # the default base of both deep-cut arms
        assert type(model.base) is arm_class("item_cf")  # type: ignore[attr-defined]
    else:
        assert base_arm(arm, settings) is None
    # liked-weighted history for the arms that score from history rows: liked = 4 on the 1..5 scale
    # (1 + (4 - 1) x (5 - 1) / 4), other ratings weigh arms.preference_other_weight = 0.5
    expected = Preference(4.0, 0.5) if arm in ("svd", "graph", "item_cf") else None
    assert model.preference == expected


def test_roles_split_the_arms() -> None:
    assert relevance_arm_names() == ("svd", "lightfm", "graph", "item_cf")
    assert bandit_arm_names() == ("svd", "lightfm", "graph", "item_cf", "long_tail", "serendipity")
    assert arm_names() == (*bandit_arm_names(), "popularity")
    defaults = load_settings()
    assert defaults.arms.enabled == arm_names() and defaults.bandit.arms == bandit_arm_names()


def test_a_sections_seed_fixes_the_arms_seed() -> None:
    settings = tiny_settings(arms={"svd": {"seed": 7}, "lightfm": {"seed": 8}})
    assert build_recommender("svd", settings, seed=3).seed == 7
    assert build_recommender("lightfm", settings, seed=3).seed == 8
    assert build_recommender("graph", settings, seed=3).seed == 3


def test_a_base_only_for_deep_cut_arms() -> None:
    settings = tiny_settings()
    base = build_recommender("svd", settings, seed=1)
    assert build_recommender("long_tail", settings, seed=2, base=base).base is base  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="no base model"):
        build_recommender("graph", settings, seed=2, base=base)


def test_settings_refuse_a_bad_base_and_unknown_arms() -> None:
    with pytest.raises(ValidationError, match="not a relevance arm"):
        tiny_settings(arms={"long_tail": {"base": "popularity"}})
    with pytest.raises(ValidationError, match="unknown arms"):
        tiny_settings(arms={"enabled": ["svd", "knn"]})
    with pytest.raises(ValueError, match="registered arms"):
        build_recommender("knn", tiny_settings(), seed=1)


def test_an_arm_without_its_settings_section_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ARMS, "ghost", ArmSpec("ghost", "ghost:Ghost", "ghost", ArmRole.RELEVANCE))
    with pytest.raises(ValidationError, match=r"arms\.ghost, which ArmsSettings lacks"):
        load_settings()


def test_a_throwaway_arm_runs_train_candidates_and_score(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CONTRIBUTING.md's recipe: a module (the class above), one registry line, no section (no knobs)."""
    monkeypatch.setitem(ARMS, THROWAWAY.name, THROWAWAY)
    home = tmp_path / "lake"
    write_world(home)
    settings = tiny_settings(home=str(home), arms={"enabled": ["throwaway"]})
    assert train_arm(settings, DAY, "throwaway")["class"] == "ThrowawayRecommender"
    assert isinstance(load_model(Lake(home), DAY, "throwaway"), ThrowawayRecommender)
    # every unseen item of the 11: 6 for each user (5 seen) but user 1 (4 seen), 20 users
    assert candidates_shard(settings, DAY, 0, 1)["rows"] == {"throwaway": 19 * 6 + 7}
    lake = Lake(home)
    candidates = lake.read_df(Dataset.CANDIDATES, DAY, subdir="throwaway")
    lists = candidates.sort_values([C.USER_ID, C.RANK]).groupby(C.USER_ID)[C.ITEM_ID].agg(list)
    # block world: user 1 saw items 1-4 (5 held out), user 13 saw 6-10; item 11 is never rated
    assert lists[1] == [11, 10, 9, 8, 7, 6, 5]
    assert lists[13] == [11, 5, 4, 3, 2, 1]
    scored = score_shard(settings, DAY, 0, 1)
    assert list(scored["arms"]) == ["throwaway"]
    reranked = lake.read_df(Dataset.RERANKED, DAY, subdir="throwaway")
    assert set(reranked[C.ARM]) == {"throwaway"} and set(reranked[C.USER_ID]) == set(range(1, 21))
    served = set(zip(reranked[C.USER_ID], reranked[C.ITEM_ID], strict=True))
    assert served <= set(zip(candidates[C.USER_ID], candidates[C.ITEM_ID], strict=True))


def test_the_models_doc_table_lists_every_registered_arm() -> None:
    """One row per registered arm, in registry order, naming the file its class really lives in."""
    rows = re.findall(r"^\| `(\w+)` \| `(models/[\w/]+\.py)` \|", (DOCS / "models.md").read_text(), re.M)
    repo = DOCS.parent
    files = {name: Path(inspect.getfile(arm_class(name))).resolve().relative_to(repo) for name in ARMS}
    assert rows == [(name, files[name].as_posix()) for name in ARMS]
