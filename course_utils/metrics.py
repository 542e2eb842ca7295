"""Measurements used by the notebooks: PCA baseline, Frechet distance, class coverage and
nearest-neighbour memorisation checks."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from .utils import batched, evaluating

if TYPE_CHECKING:   # scikit-learn takes a second to import; only the PCA functions need it
    from sklearn.decomposition import PCA

# ============================================================ sample quality and diversity
# Used by the DCGAN chapter (03) and the evaluation chapter (04). A small Fashion-MNIST
# classifier (course_utils.models.classifier) plays the role Inception-v3 plays in FID: its
# predicted labels give a class histogram of generated samples (diversity), and its
# penultimate-layer features give a Frechet distance (quality and diversity together).
# These numbers are NOT comparable with published FID values, which use Inception features.


@dataclass
class ClassHistogram:
    """How generated samples spread over the classes, as judged by a classifier.

    Attributes:
        counts: samples per class, shape (K,).
        fractions: counts / total, shape (K,).
        covered: classes holding at least ``min_fraction`` of the samples.
        kl_to_uniform: KL(fractions || uniform) in nats: 0 when every class is equally
            frequent, log(K) (2.30 for K = 10) when every sample is in one class.
        min_fraction: the coverage threshold used.
    """

    counts: np.ndarray
    fractions: np.ndarray
    covered: int
    kl_to_uniform: float
    min_fraction: float

    def __str__(self) -> str:
        k = len(self.counts)
        return (f"{self.covered}/{k} classes covered (>= {self.min_fraction:.0%} of samples), "
                f"KL(histogram || uniform) = {self.kl_to_uniform:.3f} nats")


def kl_to_uniform(fractions: np.ndarray | Tensor) -> float:
    """KL(p || uniform) = sum_k p_k log(K p_k) in nats, with 0 log 0 = 0."""
    p = np.asarray(fractions.detach().cpu() if isinstance(fractions, Tensor) else fractions,
                   dtype=np.float64)
    if p.ndim != 1 or p.size == 0:
        raise ValueError(f"expected a 1-D histogram of class fractions, got shape {p.shape}")
    if (p < 0).any() or not np.isclose(p.sum(), 1.0, atol=1e-6):
        raise ValueError("fractions must be non-negative and sum to 1; divide counts by their "
                         "total first")
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] * p.size)))


def class_histogram(labels: np.ndarray | Tensor, num_classes: int = 10,
                    min_fraction: float = 0.01) -> ClassHistogram:
    """Histogram of predicted class labels, with coverage and KL to uniform.

    Args:
        labels: integer class predictions, shape (N,), values in [0, num_classes).
        num_classes: K.
        min_fraction: a class counts as *covered* when it holds at least this fraction of
            the samples (1% by default, i.e. 100 of 10,000).
    """
    y = np.asarray(labels.detach().cpu() if isinstance(labels, Tensor) else labels)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"expected predicted labels of shape (N,), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers (use logits.argmax(1)), got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{y.min()}, {y.max()}]")
    counts = np.bincount(y, minlength=num_classes).astype(np.int64)
    fractions = counts / counts.sum()
    covered = int(np.sum(fractions >= min_fraction - 1e-12))
    return ClassHistogram(counts, fractions, covered, kl_to_uniform(fractions), min_fraction)


def _check_zero_one_images(images: Tensor) -> None:
    if not isinstance(images, Tensor) or images.ndim != 4 or tuple(images.shape[1:]) != (1, 28, 28):
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"expected an image tensor of shape (N, 1, 28, 28), got {shape}")
    if images.numel() and float(images.min()) < -1e-3:
        raise ValueError("images have negative pixels: the classifier expects [0, 1]. Map "
                         "generator output from [-1, 1] with course_utils.data.to_zero_one first.")


def _batched(model: torch.nn.Module, fn_name: str, images: Tensor, batch_size: int) -> Tensor:
    """``model.<fn_name>`` over images in [0, 1], in eval mode, batched, float32 on the CPU."""
    _check_zero_one_images(images)
    fn = getattr(model, fn_name)
    with evaluating(model):
        return batched(lambda x: fn(x).float(), images, batch_size,
                       device=next(model.parameters()).device)


def classifier_features(model: torch.nn.Module, images: Tensor, batch_size: int = 1000
                        ) -> np.ndarray:
    """Penultimate-layer features ``model.features(x)`` of images in [0, 1], float64 (N, D)."""
    return _batched(model, "features", images, batch_size).double().numpy()


def classifier_predictions(model: torch.nn.Module, images: Tensor, batch_size: int = 1000
                           ) -> np.ndarray:
    """Predicted class labels (N,) of images in [0, 1]."""
    return _batched(model, "forward", images, batch_size).argmax(1).numpy()


def feature_statistics(features: np.ndarray | Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of features (N, D), in float64.

    Raises:
        ValueError: when N <= D. With N samples the covariance has rank at most N - 1, so
            fewer than D + 1 samples cannot estimate a D-dimensional covariance at all (and
            the Frechet distance is strongly biased until N is many times D).
    """
    f = np.asarray(features.detach().cpu() if isinstance(features, Tensor) else features,
                   dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"features must have shape (N, D), got {f.shape}")
    n, d = f.shape
    if n <= d:
        raise ValueError(f"{n} samples are too few for {d}-dimensional features: the covariance "
                         f"needs at least D + 1 = {d + 1} samples to have full rank, and the "
                         f"Frechet distance is only reliable with many more (the course uses "
                         f"10,000). Pass more samples.")
    if not np.isfinite(f).all():
        raise ValueError("features contain NaN or infinity; check the images and the model")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance_from_stats(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                                sigma2: np.ndarray, eps: float = 1e-6) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2):

        ||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)).

    Computed in float64 with ``scipy.linalg.sqrtm``. Near-singular covariances are common:
    a ReLU unit that is zero for every sample (a "dead" unit) gives a zero row and column, and
    then sigma1 @ sigma2 is singular and its square root is numerically unstable (it can come
    back with inf/NaN, a large error, or complex entries). In that case we add ``eps * I`` to
    both covariances and try again; this shifts the distance by about eps * D, negligible next
    to the values compared. Round-off can still leave tiny imaginary parts on an otherwise real
    square root; we drop them, and raise if they are not tiny.
    """
    mu1, mu2 = (np.atleast_1d(np.asarray(m, np.float64)) for m in (mu1, mu2))
    sigma1, sigma2 = (np.atleast_2d(np.asarray(s, np.float64)) for s in (sigma1, sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"shapes do not match: mu {mu1.shape} vs {mu2.shape}, "
                         f"sigma {sigma1.shape} vs {sigma2.shape}")

    def sqrt_product(s1: np.ndarray, s2: np.ndarray) -> np.ndarray | None:
        product = s1 @ s2
        with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
            warnings.simplefilter("always")
            root = scipy.linalg.sqrtm(product)
        if any(issubclass(w.category, scipy.linalg.LinAlgWarning) for w in caught):
            return None  # scipy says the product is singular: the root may be inaccurate
        if not np.isfinite(root).all():
            return None
        scale = max(np.linalg.norm(product), 1e-300)
        if np.linalg.norm(root @ root - product) / scale > 1e-5:
            return None
        return root

    covmean = sqrt_product(sigma1, sigma2)
    if covmean is None:  # singular product: regularise both covariances and retry
        offset = eps * np.eye(sigma1.shape[0])
        covmean = sqrt_product(sigma1 + offset, sigma2 + offset)
        if covmean is None:
            raise FloatingPointError("the matrix square root failed even after adding "
                                     f"{eps} * I; try a larger eps or more samples")
    if np.iscomplexobj(covmean):
        imag = np.abs(np.diagonal(covmean).imag).max()
        if imag > 1e-3 * max(1.0, np.abs(np.diagonal(covmean).real).max()):
            raise FloatingPointError(f"matrix square root has imaginary part {imag:.3g}; the "
                                     "covariances are not valid (check the features)")
        covmean = covmean.real
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean)
    return float(max(value, 0.0))  # tiny negative values are round-off


def frechet_distance(features_a: np.ndarray | Tensor, features_b: np.ndarray | Tensor,
                     eps: float = 1e-6) -> float:
    """Frechet distance between two feature sets (N, D) and (M, D), each fitted by a Gaussian.

    Symmetric, 0 for identical sets, and not comparable with Inception FID values. See
    :func:`frechet_distance_from_stats` for how singular covariances are handled.
    """
    mu1, s1 = feature_statistics(features_a)
    mu2, s2 = feature_statistics(features_b)
    return frechet_distance_from_stats(mu1, s1, mu2, s2, eps=eps)


@dataclass
class SampleScores:
    """Quality and diversity of a set of generated images, against real test images."""

    frechet: float
    histogram: ClassHistogram
    n_samples: int

    def __str__(self) -> str:
        return f"Frechet distance {self.frechet:.2f} | {self.histogram} | n={self.n_samples:,}"


def score_samples(classifier: torch.nn.Module, generated: Tensor, real: Tensor,
                  real_features: np.ndarray | None = None, num_classes: int = 10
                  ) -> SampleScores:
    """Frechet distance to ``real`` and class histogram of ``generated`` (both in [0, 1]).

    Pass ``real_features`` (from :func:`classifier_features`) to reuse them across calls.
    """
    gen_features = classifier_features(classifier, generated)
    if real_features is None:
        real_features = classifier_features(classifier, real)
    labels = classifier_predictions(classifier, generated)
    return SampleScores(frechet_distance(gen_features, real_features),
                        class_histogram(labels, num_classes=num_classes), len(generated))


def real_floor(classifier: torch.nn.Module, train_x: Tensor, test_x: Tensor,
               n: int | None = None, seed: int = 0) -> float:
    """Frechet distance between real training and real test images: the best a generator can
    hope for with this many samples. Always report it next to a model's distance.

    Uses ``n`` random images from each split (default: as many as the smaller split has).
    """
    gen = torch.Generator().manual_seed(seed)
    n = min(len(train_x), len(test_x)) if n is None else n
    a = train_x[torch.randperm(len(train_x), generator=gen)[:n]]
    b = test_x[torch.randperm(len(test_x), generator=gen)[:n]]
    return frechet_distance(classifier_features(classifier, a), classifier_features(classifier, b))


@torch.no_grad()
def nearest_neighbour_distances(queries: Tensor, reference: Tensor, batch_size: int = 512
                                ) -> np.ndarray:
    """Euclidean distance from each query (N, ...) to its nearest row of ``reference`` (M, ...).

    Images are flattened; pass pixels in the same range for both (e.g. [0, 1]).
    """
    q = queries.reshape(len(queries), -1).float()
    r = reference.reshape(len(reference), -1).float()
    if q.shape[1] != r.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} values each but reference rows have "
                         f"{r.shape[1]}; compare images of the same size")
    return batched(lambda qb: torch.cdist(qb, r).min(dim=1).values, q, batch_size
                   ).double().numpy()


@dataclass
class MemorisationReport:
    """Generated->nearest-train distances against test->nearest-train distances.

    A generator that copies its training set has generated samples much *closer* to training
    images than unseen real images are (ratio well below 1). A ratio near or above 1 means no
    sign of copying, at least in pixel space.
    """

    generated_to_train: np.ndarray
    test_to_train: np.ndarray

    @property
    def ratio(self) -> float:
        """median(generated -> train) / median(test -> train)."""
        return float(np.median(self.generated_to_train) / np.median(self.test_to_train))

    def __str__(self) -> str:
        return ("median nearest-train distance: generated "
                f"{np.median(self.generated_to_train):.3f}, test "
                f"{np.median(self.test_to_train):.3f} (ratio {self.ratio:.2f})")


def memorisation_check(generated: Tensor, train: Tensor, test: Tensor) -> MemorisationReport:
    """Compare how close generated and test images come to their nearest training image."""
    return MemorisationReport(nearest_neighbour_distances(generated, train),
                              nearest_neighbour_distances(test, train))


def evaluate_generator(G: torch.nn.Module, classifier: torch.nn.Module, ds: Any,
                       n: int = 10_000, seed: int = 123, real_features: np.ndarray | None = None,
                       n_memorisation: int = 500) -> dict[str, Any]:
    """Score a generator: Frechet distance to the first ``n`` test images of ``ds``, class
    coverage, KL to uniform, and the memorisation ratio (nearest-train distances of
    ``n_memorisation`` samples vs test images), rounded for a JSON record."""
    from .models.dcgan import sample_images

    fake = sample_images(G, n, seed=seed)
    scores = score_samples(classifier, fake, ds.test_x[:n], real_features=real_features)
    memo = memorisation_check(fake[:n_memorisation], ds.train_x, ds.test_x[:n_memorisation])
    return {"frechet": round(scores.frechet, 3), "classes_covered": scores.histogram.covered,
            "kl_to_uniform": round(scores.histogram.kl_to_uniform, 4),
            "class_fractions": [round(float(f), 4) for f in scores.histogram.fractions],
            "memorisation_ratio": round(memo.ratio, 3), "n_samples": n}


# ============================================================ reconstruction (chapter 01)
# Reconstruction error is the mean squared error per pixel on the test split, pixels in
# [0, 1]. PCA fitted on the training split - the best *linear* code of each size - is the
# baseline an autoencoder with the same code size has to beat.


def _flat_pixels(images: Tensor | np.ndarray, what: str) -> np.ndarray:
    """Images (N, 1, 28, 28) or (N, D) -> float32 array (N, D), checking the pixel range."""
    x = images.detach().cpu().numpy() if isinstance(images, Tensor) else np.asarray(images)
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"{what} must have shape (N, 1, 28, 28) or (N, D) with N >= 1, "
                         f"got {x.shape}")
    x = x.reshape(len(x), -1).astype(np.float32, copy=False)
    if x.min() < -1e-6 or x.max() > 1 + 1e-6:
        raise ValueError(f"{what} has pixels in [{x.min():.3g}, {x.max():.3g}]; the course "
                         "measures reconstruction on pixels in [0, 1] (use data.to_zero_one).")
    return x


def fit_pca(train_x: Tensor | np.ndarray, k: int, seed: int = 0) -> PCA:
    """scikit-learn PCA with ``k`` components fitted on training images (N, 1, 28, 28)."""
    from sklearn.decomposition import PCA

    x = _flat_pixels(train_x, "train_x")
    if not 1 <= k <= min(x.shape):
        raise ValueError(f"k must be between 1 and min(N, D) = {min(x.shape)}, got {k}.")
    return PCA(n_components=k, random_state=seed).fit(x)


def pca_reconstruct(pca: PCA, images: Tensor) -> Tensor:
    """Project images onto a fitted PCA and back: (N, 1, 28, 28) -> (N, 1, 28, 28).

    The result is not clipped, so it can leave [0, 1] slightly; that is what PCA does.
    """
    x = _flat_pixels(images, "images")
    x_hat = pca.inverse_transform(pca.transform(x))                   # (N, D)
    return torch.from_numpy(np.asarray(x_hat, dtype=np.float32)).reshape(images.shape)


def pca_baseline(train_x: Tensor | np.ndarray, test_x: Tensor | np.ndarray, k: int,
                 seed: int = 0) -> float:
    """Test MSE per pixel of a ``k``-component PCA fitted on the training split.

    Args:
        train_x: training images (N, 1, 28, 28) or (N, D), pixels in [0, 1].
        test_x: test images, same pixel count.
        k: the code size (number of principal components).
        seed: ``random_state`` of scikit-learn's PCA (used by its randomised solver).

    Returns:
        mean over test images and pixels of (reconstruction - image)^2.
    """
    pca = fit_pca(train_x, k, seed)
    x = _flat_pixels(test_x, "test_x")
    if x.shape[1] != pca.n_features_in_:
        raise ValueError(f"test_x has {x.shape[1]} pixels per image but train_x had "
                         f"{pca.n_features_in_}.")
    x_hat = pca.inverse_transform(pca.transform(x))
    return float(np.mean((x_hat.astype(np.float64) - x) ** 2))


@torch.no_grad()
def reconstruction_mse(model: torch.nn.Module, x: Tensor, batch_size: int = 1000,
                       per_image: bool = False) -> float | Tensor:
    """Mean squared error per pixel between ``model(x)`` and ``x``, in eval mode.

    Args:
        model: maps images (B, 1, 28, 28) in [0, 1] to reconstructions of the same shape.
        x: images (N, 1, 28, 28), pixels in [0, 1].
        batch_size: images per forward pass.
        per_image: return the (N,) tensor of per-image MSEs instead of their mean.
    """
    if not isinstance(x, Tensor) or x.ndim < 2 or len(x) == 0:
        raise ValueError("x must be a non-empty image tensor of shape (N, 1, 28, 28)")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))

    def errors(batch: Tensor) -> Tensor:                              # (B, 1, 28, 28) -> (B,)
        x_hat = model(batch)
        if x_hat.shape != batch.shape:
            raise ValueError(f"the model returned shape {tuple(x_hat.shape)} for input "
                             f"{tuple(batch.shape)}; a reconstruction must match its input")
        return (x_hat.float() - batch).pow(2).flatten(1).mean(1)

    with evaluating(model):
        per = batched(errors, x, batch_size, device=device)           # (N,)
    return per if per_image else float(per.double().mean())
