"""Wrong and right-but-unusual answers to chapter 02's "predict, then run" question.

* ``vae_predict_beta``: ``predict_sharpest_beta(betas) -> beta``: before the beta-VAE runs of
  section 10, the learner predicts which of the betas gives the sharpest prior samples, as a
  rule over the list it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

Factory = Callable[[], Any]


def _largest() -> Callable[[list[float]], float]:
    """Reads "beta-VAE gives cleaner, disentangled factors" as "sharper": picks the largest."""
    return lambda betas: max(betas)


def _elbo_one() -> Callable[[list[float]], float]:
    """Picks beta = 1 because it is the true ELBO, as if the proper objective meant sharpness."""
    return lambda betas: 1.0


def _middle() -> Callable[[list[float]], float]:
    """Hedges with the median beta."""
    return lambda betas: sorted(betas)[len(betas) // 2]


def _first() -> Callable[[list[float]], float]:
    """Assumes the list is sorted and returns its first entry (the notebook's order)."""
    return lambda betas: betas[0]


def _hard_coded() -> Callable[[list[float]], float]:
    """Right for the notebook's list, but a fixed number rather than a rule."""
    return lambda betas: 0.5


def _index() -> Callable[[list[float]], int]:
    """Returns the position of the smallest beta instead of the beta itself."""
    return lambda betas: betas.index(min(betas))


def _as_text() -> Callable[[list[float]], str]:
    """Answers in words / as a string."""
    return lambda betas: str(min(betas))


def _sorts_in_place() -> Callable[[list[float]], float]:
    """Sorts the caller's list in place to find the smallest: changes the notebook's betas."""
    def predict(betas: list[float]) -> float:
        betas.sort()
        return betas[0]
    return predict


def _zero() -> Callable[[list[float]], float]:
    """"No KL at all is sharpest": returns 0, which is not one of the runs."""
    return lambda betas: 0.0


def _forgets_return() -> Callable[[list[float]], None]:
    """Computes the answer but never returns it."""
    def predict(betas: list[float]) -> None:
        min(betas)
    return predict


WRONG: dict[str, list[tuple[str, Factory]]] = {
    "vae_predict_beta": [
        ("largest_beta", _largest),
        ("elbo_beta_one", _elbo_one),
        ("median_beta", _middle),
        ("first_in_list", _first),
        ("hard_coded_number", _hard_coded),
        ("index_not_value", _index),
        ("string_answer", _as_text),
        ("sorts_callers_list", _sorts_in_place),
        ("beta_zero", _zero),
        ("returns_none", _forgets_return),
    ],
}

RIGHT: dict[str, list[tuple[str, Factory]]] = {
    "vae_predict_beta": [
        ("sorted_copy", lambda: (lambda betas: sorted(betas)[0])),
        ("numpy_scalar", lambda: (lambda betas: np.min(np.asarray(betas)))),
        ("torch_scalar", lambda: (lambda betas: torch.tensor(betas).min())),
    ],
}
