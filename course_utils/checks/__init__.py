"""Per-notebook exercise checks. Notebooks use ``from course_utils.checks import check``."""

from .core import (CheckFailure, CheckResult, Exercise, check, exercise, expect, get_exercise,
                   hidden_check, registry, run_checkers)

__all__ = ["check", "exercise", "expect", "hidden_check", "registry", "get_exercise",
           "run_checkers", "CheckFailure", "CheckResult", "Exercise"]
