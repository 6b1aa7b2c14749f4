"""Genres and title vocabulary of the synthetic world."""

from __future__ import annotations

import numpy as np

#: (genre, share of catalog genre slots). Anime and the other niche genres are rare on purpose.
GENRES: tuple[tuple[str, float], ...] = (
    ("Drama", 0.180),
    ("Comedy", 0.150),
    ("Thriller", 0.080),
    ("Action", 0.080),
    ("Romance", 0.070),
    ("Adventure", 0.050),
    ("Crime", 0.050),
    ("Sci-Fi", 0.040),
    ("Horror", 0.040),
    ("Indie", 0.035),
    ("Fantasy", 0.030),
    ("Children", 0.030),
    ("Mystery", 0.030),
    ("Animation", 0.025),
    ("Documentary", 0.025),
    ("War", 0.020),
    ("Anime", 0.020),
    ("Musical", 0.015),
    ("Western", 0.015),
    ("Film-Noir", 0.010),
)
GENRE_NAMES: tuple[str, ...] = tuple(g for g, _ in GENRES)
#: Niche genres: less exposure in the world, the deep cuts the product looks for.
NICHE_GENRES: tuple[str, ...] = ("Anime", "Documentary", "Film-Noir", "Western", "Musical")

_ADJECTIVES = (
    "Silent", "Crimson", "Last", "Hidden", "Broken", "Golden", "Midnight", "Endless", "Quiet", "Lost",
    "Electric", "Paper", "Wild", "Frozen", "Distant", "Secret", "Burning", "Hollow", "Northern", "Velvet",
    "Glass", "Iron", "Bitter", "Restless", "Sleeping", "Second", "Forgotten", "Little", "Shining", "Dark",
)  # fmt: skip
_NOUNS = (
    "Harbor", "River", "Garden", "Station", "Empire", "Letter", "Mirror", "Summer", "Highway", "Orchard",
    "Lighthouse", "Engine", "Kingdom", "Witness", "Stranger", "Carnival", "Frontier", "Island", "Signal",
    "Promise", "Canyon", "Circus", "Archive", "Horizon", "Parade", "Saint", "Forest", "Machine", "Tide",
    "Ballad",
)  # fmt: skip
_ANIME = (
    "Sora", "Kaze", "Hoshi", "Yume", "Tsuki", "Hikari", "Mirai", "Kokoro", "Umi", "Sakura", "Ryu",
    "Kumo", "Akatsuki", "Yoru", "Hana",
)  # fmt: skip
_PATTERNS = ("The {a} {n}", "{a} {n}", "The {n} of the {a} {m}", "{n} and {m}", "A {a} {n}")


def make_titles(genres: list[list[str]], years: np.ndarray, rng: np.random.Generator) -> list[str]:
    """Distinct MovieLens-style titles ``"The Silent Harbor (1994)"``; repeats get ``II``, ``III``..."""
    n = len(genres)
    a = rng.integers(0, len(_ADJECTIVES), n)
    nn = rng.integers(0, len(_NOUNS), n)
    m = rng.integers(0, len(_NOUNS), n)
    pattern = rng.integers(0, len(_PATTERNS), n)
    jp = rng.integers(0, len(_ANIME), (n, 2))
    seen: dict[str, int] = {}
    titles = []
    for i in range(n):
        if "Anime" in genres[i]:
            base = f"{_ANIME[jp[i, 0]]} no {_ANIME[jp[i, 1]]}"
        else:
            base = _PATTERNS[pattern[i]].format(a=_ADJECTIVES[a[i]], n=_NOUNS[nn[i]], m=_NOUNS[m[i]])
        count = seen.get(base, 0) + 1
        seen[base] = count
        suffix = "" if count == 1 else f" {_roman(count)}"
        titles.append(f"{base}{suffix} ({int(years[i])})")
    return titles


_ROMAN = ((1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"), (50, "L"), (40, "XL"),
          (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I"))  # fmt: skip


def _roman(k: int) -> str:
    out = []
    for value, sym in _ROMAN:
        while k >= value:
            out.append(sym)
            k -= value
    return "".join(out)
