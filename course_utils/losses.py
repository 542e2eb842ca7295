"""Loss functions: reconstruction losses, the KL divergence and ELBO (VAE), and GAN losses.

All losses follow one convention: they take raw model outputs (logits where a probability is
involved, for numerical stability) and return scalar tensors averaged over the batch unless
the docstring says otherwise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
