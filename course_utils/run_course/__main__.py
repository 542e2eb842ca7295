"""``python -m course_utils.run_course``: see :mod:`course_utils.run_course`."""

import sys

from . import main

sys.exit(main())
