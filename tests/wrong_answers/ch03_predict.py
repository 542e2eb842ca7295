"""Wrong and right-but-unusual answers to chapter 03's "predict, then run" question.

* ``gan_predict_mitigation``: ``predict_mitigation(arms) -> name``: before section 7's
  mode-collapse experiment runs, the learner names the arm (a key of ``arms``, which maps each
  arm's name to the one thing it changes) that they expect to beat the baseline on every
  seed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Factory = Callable[[], Any]
Rule = Callable[[dict[str, str]], Any]


def _fixed(name: str) -> Factory:
    """A rule that always names ``name``."""
    return lambda: (lambda arms: name)


def _description() -> Rule:
    """Answers with what the arm changes (the dict's value) instead of its name."""
    return lambda arms: next(what for what in arms.values() if "d_lr" in what)


def _position() -> Rule:
    """Answers with the arm's position in the dict (as if the notebook's order were fixed)."""
    return lambda arms: 3


def _several() -> Rule:
    """Hedges: returns every arm that changes a learning rate, as a list."""
    return lambda arms: [name for name, what in arms.items() if "lr" in what]


def _pops() -> Rule:
    """Removes the arms it has ruled out from the caller's dict while deciding."""
    def predict(arms: dict[str, str]) -> str:
        for name in [n for n, what in arms.items() if "d_lr" not in what]:
            arms.pop(name)
        return next(iter(arms))
    return predict


def _forgets_return() -> Rule:
    """Finds the arm but never returns it."""
    def predict(arms: dict[str, str]) -> None:
        next(name for name, what in arms.items() if "d_lr" in what)
    return predict


WRONG: dict[str, list[tuple[str, Factory]]] = {
    "gan_predict_mitigation": [
        # plausible wrong predictions: each of the other arms
        ("label_smoothing_as_in_the_recipe", _fixed("label smoothing")),
        ("spectral_norm_as_the_modern_default", _fixed("spectral norm in D")),
        ("weight_decay_as_the_article_says", _fixed("weight decay")),
        ("nothing_helps", _fixed("collapsing baseline")),
        ("an_arm_that_is_not_offered", _fixed("batch normalisation")),
        # right idea, wrong form
        ("description_not_name", _description),
        ("position_not_name", _position),
        ("list_of_candidates", _several),
        ("edits_callers_dict", _pops),
        ("returns_none", _forgets_return),
    ],
}

RIGHT: dict[str, list[tuple[str, Factory]]] = {
    "gan_predict_mitigation": [
        ("looked_up_by_what_it_changes",
         lambda: (lambda arms: next(n for n, what in arms.items() if what.startswith("d_lr")))),
        ("other_case_and_spaces", _fixed("  d learning rate X4 ")),
        # slows both players: also acts on the balance of speed, and helped on every seed
        ("lower_rates_as_the_article_says", _fixed("lower learning rates")),
        ("numpy_string", lambda: (lambda arms: np.str_("D learning rate x4"))),
    ],
}
