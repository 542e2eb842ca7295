"""Per-notebook exercise checks. Notebooks use ``from course_utils.checks import check``."""

from .core import (
                   CheckFailure,
                   CheckResult,
                   Exercise,
                   check,
                   exercise,
                   expect,
                   get_exercise,
                   hidden_check,
                   hidden_judge,
                   judge_data,
                   registry,
                   run_checkers,
)
from .protocol import Case

__all__ = ["check", "exercise", "expect", "hidden_check", "hidden_judge", "registry",
           "get_exercise", "judge_data", "run_checkers", "CheckFailure", "CheckResult",
           "Exercise", "Case"]
