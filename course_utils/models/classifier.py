"""A small CNN classifier for Fashion-MNIST, used to *measure* generative models.

It plays the part Inception-v3 plays in FID (Heusel et al. 2017): its predicted labels give the
class histogram of generated samples (diversity, mode collapse), and its penultimate layer
(:meth:`FashionClassifier.features`, 128 numbers per image) gives the features in which the
course computes its Frechet distance. Distances in these features are not comparable with
published FID values.

The shipped weights (``course_utils/pretrained/classifier.pt``) come from
``python -m course_utils.pretrained.train_classifier``; load them with
:func:`course_utils.pretrained.load_classifier`.

Input: images (B, 1, 28, 28) with pixels in [0, 1] (the range ``load_dataset`` returns).
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["FashionClassifier"]


def _conv(c_in: int, c_out: int) -> list[nn.Module]:
    """conv3x3 (same size) -> BatchNorm -> ReLU."""
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True)]


class FashionClassifier(nn.Module):
    """Images (B, 1, 28, 28) in [0, 1] -> class logits (B, num_classes).

    Args:
        width: channels of the first convolution (the next ones have 2x and 4x).
        feature_dim: size of the penultimate layer returned by :meth:`features`.
        num_classes: number of classes (10 for Fashion-MNIST).
        dropout: dropout before the last layer, in training only.
    """

    def __init__(self, width: int = 16, feature_dim: int = 128, num_classes: int = 10,
                 dropout: float = 0.3) -> None:
        super().__init__()
        self.feature_dim, self.num_classes = feature_dim, num_classes
        w = width
        self.body = nn.Sequential(
            *_conv(1, w), nn.MaxPool2d(2),                          # (B, w, 14, 14)
            *_conv(w, 2 * w), *_conv(2 * w, 2 * w), nn.MaxPool2d(2),  # (B, 2w, 7, 7)
            *_conv(2 * w, 4 * w), nn.MaxPool2d(2),                  # (B, 4w, 3, 3)
            nn.Flatten(),                                           # (B, 36w)
        )
        self.penultimate = nn.Sequential(nn.Linear(36 * w, feature_dim),
                                         nn.ReLU(inplace=True))                 # (B, F)
        self.head = nn.Sequential(nn.Dropout(dropout),
                                  nn.Linear(feature_dim, num_classes))         # (B, K)

    def _check(self, x: Tensor) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"FashionClassifier expects images of shape (B, 1, 28, 28), got "
                             f"{tuple(x.shape)}")

    def features(self, x: Tensor) -> Tensor:
        """Penultimate-layer activations (B, feature_dim), after ReLU (some units may be 0)."""
        self._check(x)
        return self.penultimate(self.body(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))                   # (B, num_classes) logits
