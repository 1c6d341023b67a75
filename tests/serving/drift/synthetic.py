"""Synthetic tabular data for drift tests and the drift benchmark: independent standard
normal numeric features and categorical features with fixed category shares, plus the
shifts the tests and the benchmark inject."""

from __future__ import annotations

import numpy as np
import pandas as pd

CATEGORIES = ("a", "b", "c", "d")
SHARES = (0.5, 0.3, 0.15, 0.05)
# The category-frequency shift: 'a' loses 8 points, 'c' gains 5, 'd' gains 3.
SHIFTED_SHARES = (0.42, 0.3, 0.2, 0.08)


def kinds(numeric: int, categorical: int) -> dict[str, str]:
    return {
        **{f"x{i}": "numeric" for i in range(numeric)},
        **{f"c{i}": "categorical" for i in range(categorical)},
    }


def frame(
    n: int,
    rng: np.random.Generator,
    *,
    numeric: int,
    categorical: int,
    mean_shift: float = 0.0,
    category_shift: bool = False,
) -> pd.DataFrame:
    """`n` rows; `mean_shift` (in standard deviations) moves x0 only, `category_shift`
    changes the shares of c0 only."""
    cols: dict[str, object] = {}
    for i in range(numeric):
        cols[f"x{i}"] = rng.normal(size=n) + (mean_shift if i == 0 else 0.0)
    for i in range(categorical):
        shares = SHIFTED_SHARES if (category_shift and i == 0) else SHARES
        cols[f"c{i}"] = rng.choice(CATEGORIES, size=n, p=shares)
    return pd.DataFrame(cols)
