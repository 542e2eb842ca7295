"""The Fashion-MNIST classifier, its training script, and the shipped checkpoints."""

from __future__ import annotations

import pytest
import torch

from course_utils import pretrained
from course_utils.data import DataError, Dataset, load_dataset
from course_utils.models.classifier import FashionClassifier
from course_utils.pretrained.train_classifier import classification_loss, dataset_hash
from course_utils.training import fit


def test_shapes_and_features_are_the_penultimate_layer():
    model = FashionClassifier().eval()
    x = torch.rand(3, 1, 28, 28)
    feats = model.features(x)
    assert feats.shape == (3, 128) and (feats >= 0).all()          # after ReLU
    assert torch.allclose(model(x), model.head(feats))
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        model(torch.rand(3, 784))


def test_float32_weights_fit_in_under_a_megabyte():
    n = sum(t.numel() for t in FashionClassifier().state_dict().values())
    assert n * 4 < 1_000_000


def test_loss_reports_accuracy_and_flip_only_in_training():
    model = FashionClassifier(width=4, feature_dim=8)
    x, y = torch.rand(6, 1, 28, 28), torch.randint(0, 10, (6,))
    out = classification_loss(model, (x, y))
    assert set(out) == {"loss", "accuracy"} and 0 <= out["accuracy"] <= 1
    model.eval()
    with torch.no_grad():
        a = classification_loss(model, (x, y), flip=True)["loss"]
        b = classification_loss(model, (x, y), flip=False)["loss"]
    assert torch.equal(a, b)                                           # eval: no flips


def test_shared_fit_loop_learns_a_toy_task():
    # class 0: bright left half, class 1: bright right half
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (64,), generator=g)
    x = torch.rand(64, 1, 28, 28, generator=g) * 0.2
    x[y == 0, :, :, :14] += 0.8
    x[y == 1, :, :, 14:] += 0.8
    torch.manual_seed(0)
    model = FashionClassifier(width=4, feature_dim=16, num_classes=2)
    hist = fit(model, classification_loss, (x, y), epochs=4, batch_size=16, lr=1e-2,
               progress=False, device="cpu").history
    assert hist[-1]["train_accuracy"] > 0.9


def test_dataset_hash_is_deterministic_and_sensitive():
    g = torch.Generator().manual_seed(0)
    ds = Dataset("toy", "synthetic", ("a", "b"), torch.rand(8, 1, 28, 28, generator=g),
                 torch.randint(0, 2, (8,), generator=g), torch.rand(4, 1, 28, 28, generator=g),
                 torch.randint(0, 2, (4,), generator=g))
    h = dataset_hash(ds)
    assert h == dataset_hash(ds) and len(h) == 64
    ds.train_x = ds.train_x.clone()
    ds.train_x[0, 0, 0, 0] = 1 - ds.train_x[0, 0, 0, 0]
    assert dataset_hash(ds) != h


def test_shipped_classifier_metadata_and_size():
    meta = pretrained.metadata("classifier")
    assert meta["test_accuracy"] >= 0.91, "the shipped classifier must reach 0.91"
    assert len(meta["data_sha256"]) == 64 and isinstance(meta["seed"], int)
    assert (pretrained.HERE / "classifier.pt").stat().st_size < 1_000_000
    model = pretrained.load_classifier()
    assert not model.training


@pytest.mark.slow
def test_shipped_classifier_accuracy_on_a_test_slice():
    try:
        ds = load_dataset("fashion-mnist", download=False, max_train=16, max_test=1000)
    except DataError:
        pytest.skip("Fashion-MNIST is not available offline here")
    model = pretrained.load_classifier()
    with torch.no_grad():
        acc = (model(ds.test_x).argmax(1) == ds.test_y).float().mean().item()
    assert acc > 0.88                       # 1,000 images: a loose bound around >= 0.91


def test_shipped_generator_loads_and_has_its_run():
    G = pretrained.load_dcgan_generator()
    meta = pretrained.metadata("dcgan_generator")
    with torch.no_grad():
        x = G(torch.randn(4, G.latent_dim))
    assert x.shape == (4, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    assert next(G.parameters()).dtype == torch.float32
    assert {"steps", "recipe", "data_sha256", "seed"} <= set(meta)
    D = pretrained.load_dcgan_discriminator()
    with torch.no_grad():
        assert D(x).shape == (4,)
    history, snapshots = pretrained.load_dcgan_run()
    assert {"step", "d_loss", "g_loss", "d_real", "d_fake"} <= set(history)
    assert snapshots and snapshots[0][1].shape[1:] == (1, 28, 28)
    assert all(0 <= float(s[1].min()) and float(s[1].max()) <= 1 for s in snapshots)
