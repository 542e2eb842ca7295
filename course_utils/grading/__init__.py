"""Student-notebook generation and the batch grader.

Generation: :mod:`.notebooks` (solution -> student notebook) and :mod:`.generate` (its command
line). The grader, one step per module: :mod:`.assignment` (load the template),
:mod:`.submission` (read and match a file), :mod:`.kernel` (code run inside the grading
kernel), :mod:`.execution` (run the graded notebook under limits), :mod:`.verdicts` (grade one
submission), :mod:`.records` (its typed task and record), :mod:`.pool` (worker processes),
:mod:`.reports` and :mod:`.batch` (a folder of submissions) and :mod:`.cli` (``course-grade``).

This package imports nothing itself: the grading kernel imports :mod:`.kernel` from it, and
must not pull in the grader's own dependencies by doing so.
"""
