"""Training loops: one generic loop (autoencoder, VAE, classifier) and the GAN loop.

Both slice batches from in-memory tensors (``course_utils.data.iterate_batches``), show a
``tqdm.auto`` progress bar, stop after a number of epochs or a time budget, return their
history as data, and can save and resume checkpoints.
"""

from __future__ import annotations
