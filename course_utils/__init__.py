"""course_utils: tested helpers for the deep generative models course.

Modules: ``config`` (mode, device, seeds), ``data`` (datasets in memory), ``models``
(autoencoder, vae, dcgan, classifier), ``losses``, ``training``, ``metrics``, ``plots``,
``widgets``, ``checks`` (in-notebook exercise checks) and ``grading`` (student notebooks and
the batch grader).
"""

__version__ = "0.1.0"
