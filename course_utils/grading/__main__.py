"""``python -m course_utils.grading``: the batch grader's command line (see grader.py)."""

import sys

from .grader import main

if __name__ == "__main__":
    sys.exit(main())
