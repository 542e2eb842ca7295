"""Measurements used by the notebooks: PCA baseline, Frechet distance, class coverage and
nearest-neighbour memorisation checks."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
