"""trace_shapes lists each layer's output shape in the order the layers run."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_utils.shapes import trace_shapes


def test_trace_follows_the_data_and_restores_the_mode(capsys):
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 8), nn.ReLU(),
                          nn.Sequential(nn.Linear(8, 3)))
    model.train()
    rows = trace_shapes(model, torch.zeros(5, 1, 28, 28))
    assert rows == [("0", "Flatten", (5, 784)), ("1", "Linear", (5, 8)), ("2", "ReLU", (5, 8)),
                    ("3.0", "Linear", (5, 3))]
    assert model.training
    assert "3.0" in capsys.readouterr().out
    assert all(not m._forward_hooks for m in model.modules())


def test_trace_a_named_method():
    from course_utils.models.vae import ConvVAE

    vae = ConvVAE(latent_dim=4, width=4, hidden=0)
    rows = trace_shapes(vae, torch.zeros(2, 1, 28, 28), method="encode", show=False)
    assert rows[-1][0] == "enc_stats" and rows[-1][2] == (2, 8)      # mu and logvar: 2 x 4
    with pytest.raises(AttributeError, match="no method"):
        trace_shapes(vae, torch.zeros(2, 1, 28, 28), method="encoder")
