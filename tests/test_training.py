"""The generic training loop (course_utils.training.fit) and its reusable parts."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from course_utils import training
from course_utils.models.autoencoder import MLPAutoencoder, autoencoder_loss, denoising_loss
from course_utils.training import (
    History,
    MetricAccumulator,
    evaluate,
    fit,
    load_checkpoint,
    lr_factor,
    save_checkpoint,
)


class Regressor(nn.Module):
    """A tiny model with dropout, so training consumes the global random stream."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(1)


def regression_loss(model: nn.Module, batch: tuple[Tensor, ...]) -> dict[str, Tensor]:
    x, y = batch
    noise = 0.01 * torch.randn_like(y)                      # randomness inside the loss too
    loss = ((model(x) - y - noise) ** 2).mean()
    return {"loss": loss, "x_mean": x.mean(), "ones": torch.ones(())}


def regression_data(n: int = 50) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=gen)
    return x, x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1


def make_model(seed: int = 0) -> Regressor:
    torch.manual_seed(seed)
    return Regressor()


def params(model: nn.Module) -> list[Tensor]:
    return [p.detach().clone() for p in model.state_dict().values()]


TIMING = {"seconds", "elapsed", "images_per_sec"}


def without_timing(history: History) -> list[dict[str, float]]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in history]


# ----------------------------------------------------------------------------- basics

def test_history_has_one_record_per_epoch_with_throughput() -> None:
    x, y = regression_data()
    history = fit(make_model(), regression_loss, (x, y), test_tensors=(x[:20], y[:20]),
                  epochs=3, batch_size=16, progress=False).history
    assert len(history) == 3 and history["epoch"] == [1, 2, 3]
    assert history["step"] == [4, 8, 12]                     # ceil(50 / 16) = 4 steps/epoch
    for record in history:
        assert record["images_per_sec"] > 0 and record["seconds"] > 0
        assert {"train_loss", "test_loss", "train_x_mean", "test_ones", "lr"} <= set(record)
    assert history.last is history[-1]
    assert history.to_dict()["train_loss"] == history["train_loss"]
    with pytest.raises(KeyError, match="available"):
        history["nope"]


def test_extra_metrics_are_averaged_over_examples_not_batches() -> None:
    x, y = regression_data(50)                               # batches of 16, 16, 16, 2
    history = fit(make_model(), regression_loss, (x, y), epochs=1, batch_size=16,
                  progress=False).history
    assert history[0]["train_x_mean"] == pytest.approx(float(x.mean()), abs=1e-6)
    assert history[0]["train_ones"] == pytest.approx(1.0)


def test_training_reduces_the_loss_and_restores_nothing_it_should_not() -> None:
    x, y = regression_data(64)
    history = fit(make_model(), regression_loss, (x, y), epochs=30, batch_size=16, lr=1e-2,
                  progress=False).history
    assert history["train_loss"][-1] < 0.2 * history["train_loss"][0]


def test_same_seed_same_run_and_different_seed_different_run() -> None:
    x, y = regression_data()
    runs = []
    for seed in (0, 0, 1):
        model = make_model()
        fit(model, regression_loss, (x, y), epochs=2, batch_size=16, seed=seed, progress=False)
        runs.append(params(model))
    assert all(torch.equal(a, b) for a, b in zip(runs[0], runs[1], strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(runs[0], runs[2], strict=True))


def test_time_budget_stops_the_loop_inside_an_epoch() -> None:
    x, y = regression_data(64)
    history = fit(make_model(), regression_loss, (x, y), time_budget=0.0, batch_size=8,
                  progress=False).history                            # at least one step, then stop
    assert len(history) == 1
    assert history[0]["step"] == 1
    assert history[0]["epoch"] == pytest.approx(1 / 8)      # a fractional, partial epoch


def test_a_run_needs_epochs_or_a_time_budget() -> None:
    x, y = regression_data()
    with pytest.raises(ValueError, match="time_budget"):
        fit(make_model(), regression_loss, (x, y), progress=False)


def test_lr_schedules() -> None:
    assert lr_factor("constant", 0.7) == 1.0
    assert lr_factor("cosine", 0.0) == pytest.approx(1.0)
    assert lr_factor("cosine", 0.5) == pytest.approx(0.5)
    assert lr_factor("cosine", 1.0) == pytest.approx(0.0)
    assert lr_factor("onecycle", 0.025, warmup=0.05) == pytest.approx(0.5)
    assert lr_factor("onecycle", 0.05, warmup=0.05) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="cosine"):
        lr_factor("linear", 0.3)
    x, y = regression_data(32)
    history = fit(make_model(), regression_loss, (x, y), epochs=4, batch_size=8, lr=0.1,
                  lr_schedule="cosine", progress=False).history
    lrs = history["lr"]
    assert lrs[0] < 0.1 and all(a > b for a, b in zip(lrs, lrs[1:], strict=False))


# ----------------------------------------------------------------------------- errors

def test_wrong_input_shape_names_the_expected_shape() -> None:
    model = MLPAutoencoder(2, hidden=(8, 4))
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\).*\(10, 784\)"):
        fit(model, autoencoder_loss, (torch.rand(10, 784),), epochs=1, progress=False)
    with pytest.raises(ValueError, match="test_tensors"):
        fit(model, autoencoder_loss, (torch.rand(10, 1, 28, 28),),
            test_tensors=(torch.rand(4, 28, 28),), epochs=1, progress=False)


def test_misaligned_or_empty_data_is_rejected() -> None:
    x, y = regression_data()
    with pytest.raises(ValueError, match="rows"):
        fit(make_model(), regression_loss, (x, y[:10]), epochs=1, progress=False)
    with pytest.raises(ValueError, match="empty"):
        fit(make_model(), regression_loss, (x[:0], y[:0]), epochs=1, progress=False)
    with pytest.raises(TypeError, match="tuple of tensors"):
        fit(make_model(), regression_loss, [x.numpy()], epochs=1, progress=False)


def test_bad_loss_functions_get_clear_errors() -> None:
    x, y = regression_data()
    with pytest.raises(ValueError, match="scalar"):
        fit(make_model(), lambda m, b: (m(b[0]) - b[1]) ** 2, (x, y), epochs=1, progress=False)
    with pytest.raises(TypeError, match="'loss'"):
        fit(make_model(), lambda m, b: {"mse": m(b[0]).mean()}, (x, y), epochs=1, progress=False)
    with pytest.raises(ValueError, match="learning rate"):
        fit(make_model(), lambda m, b: m(b[0]).mean() * math.nan, (x, y), epochs=1,
            progress=False)


def test_evaluate_leaves_the_random_stream_and_mode_alone() -> None:
    x, y = regression_data()
    model = make_model()
    model.train()
    torch.manual_seed(5)
    before = torch.get_rng_state()
    first = evaluate(model, regression_loss, (x, y), batch_size=7)
    assert torch.equal(torch.get_rng_state(), before)
    assert model.training
    assert evaluate(model, regression_loss, (x, y), batch_size=7) == first   # deterministic
    assert first["x_mean"] == pytest.approx(float(x.mean()), abs=1e-6)


def test_metric_accumulator_weights_by_batch_size() -> None:
    acc = MetricAccumulator()
    acc.add({"a": torch.tensor(1.0), "b": 2.0}, n=3)
    acc.add({"a": torch.tensor(5.0), "b": 2.0}, n=1)
    assert acc.means() == pytest.approx({"a": 2.0, "b": 2.0})
    clone = MetricAccumulator()
    clone.load_state_dict(acc.state_dict(), torch.device("cpu"))
    assert clone.means() == acc.means()


# ----------------------------------------------------------------------------- checkpoints

def test_resume_after_every_step_matches_the_uninterrupted_run(tmp_path: Path) -> None:
    """Stop after each single step (time_budget=0), resume, repeat: same model, same history."""
    x, y = regression_data(40)
    kwargs = dict(epochs=3, batch_size=16, lr=1e-2, progress=False)
    reference = make_model()
    ref_history = fit(reference, regression_loss, (x, y), test_tensors=(x, y), **kwargs).history

    ckpt = tmp_path / "run.pt"
    model = make_model()
    calls = 0
    while True:
        history = fit(model, regression_loss, (x, y), test_tensors=(x, y), time_budget=0.0,
                      checkpoint_path=ckpt, resume=True, **kwargs).history
        calls += 1
        if len(history) and history[-1]["epoch"] == 3:
            break
        model = make_model(seed=123)          # a fresh process: everything comes from the file
        assert calls < 20
    assert calls == 9                          # 3 epochs x 3 steps, one step per call
    assert all(torch.equal(a, b) for a, b in zip(params(reference), params(model), strict=True))
    assert without_timing(history) == without_timing(ref_history)


def test_resume_from_an_epoch_checkpoint_with_a_random_loss(tmp_path: Path) -> None:
    """Denoising noise comes from the global generator: it must be restored as well."""
    torch.manual_seed(0)
    x = torch.rand(24, 1, 28, 28)
    loss = denoising_loss(0.3)
    kwargs = dict(batch_size=8, progress=False)

    def model() -> MLPAutoencoder:
        torch.manual_seed(0)
        return MLPAutoencoder(2, hidden=(16, 8))

    reference = model()
    ref_history = fit(reference, loss, (x,), epochs=3, **kwargs).history
    first = model()
    fit(first, loss, (x,), epochs=1, checkpoint_path=tmp_path / "ae.pt", **kwargs)
    torch.manual_seed(999)                     # disturb the global stream in between
    resumed = model()
    history = fit(resumed, loss, (x,), epochs=3, checkpoint_path=tmp_path / "ae.pt",
                  resume=True, **kwargs).history
    assert all(torch.equal(a, b) for a, b in zip(params(reference), params(resumed), strict=True))
    assert without_timing(history) == without_timing(ref_history)
    # resuming a finished run does nothing and returns its history
    again = fit(model(), loss, (x,), epochs=3, checkpoint_path=tmp_path / "ae.pt",
                resume=True, **kwargs).history
    assert without_timing(again) == without_timing(ref_history)


def test_resume_after_a_crash_matches_the_uninterrupted_run(tmp_path: Path) -> None:
    """A run dies in epoch 3; the rerun picks up the epoch-2 checkpoint and ends identically,
    one-cycle learning-rate schedule included."""
    x, y = regression_data(40)
    kwargs = dict(epochs=4, batch_size=16, lr=1e-2, lr_schedule="onecycle", progress=False,
                  checkpoint_path=tmp_path / "crash.pt")
    reference = make_model()
    ref_history = fit(reference, regression_loss, (x, y),
                      **{**kwargs, "checkpoint_path": None}).history

    calls = 0

    def crashing_loss(model: nn.Module, batch: tuple[Tensor, ...]) -> dict[str, Tensor]:
        nonlocal calls
        calls += 1
        if calls == 8:                                       # step 2 of epoch 3
            raise RuntimeError("power cut")
        return regression_loss(model, batch)

    with pytest.raises(RuntimeError, match="power cut"):
        fit(make_model(), crashing_loss, (x, y), **kwargs)
    assert load_checkpoint(tmp_path / "crash.pt")["epoch"] == 2
    resumed = make_model(seed=7)
    history = fit(resumed, regression_loss, (x, y), resume=True, **kwargs).history
    assert all(torch.equal(a, b) for a, b in zip(params(reference), params(resumed), strict=True))
    assert without_timing(history) == without_timing(ref_history)


def test_a_time_budget_also_drives_the_schedule() -> None:
    x, y = regression_data(32)
    history = fit(make_model(), regression_loss, (x, y), epochs=1000, time_budget=0.0,
                  batch_size=8, lr=0.1, lr_schedule="cosine", progress=False).history
    assert history[-1]["lr"] == pytest.approx(0.0)       # the clock ran out first: fully decayed


def test_resume_checks_its_arguments(tmp_path: Path) -> None:
    x, y = regression_data()
    with pytest.raises(ValueError, match="checkpoint_path"):
        fit(make_model(), regression_loss, (x, y), epochs=1, resume=True, progress=False)
    fit(make_model(), regression_loss, (x, y), epochs=1, batch_size=10,
        checkpoint_path=tmp_path / "c.pt", progress=False)
    with pytest.raises(ValueError, match="batch_size=10"):
        fit(make_model(), regression_loss, (x, y), epochs=2, batch_size=5,
            checkpoint_path=tmp_path / "c.pt", resume=True, progress=False)


def test_checkpoint_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.pt"
    save_checkpoint(path, {"value": torch.tensor([1.0]), "note": "first"})
    assert load_checkpoint(path)["note"] == "first"

    def broken_save(obj: object, f) -> None:                  # dies half-way through writing
        f.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"value": torch.tensor([2.0]), "note": "second"})
    monkeypatch.undo()
    assert load_checkpoint(path)["note"] == "first"            # the old file is intact
    assert os.listdir(tmp_path) == ["state.pt"]                # and no temporary file is left


def test_damaged_checkpoint_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="(?s)bad.pt.*resume=False"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_time_budget_follows_the_given_clock():
    """A CPU-seconds (or any) clock drives the budget: here a fake clock that ticks per call."""
    ticks = iter(range(10**6))
    model = torch.nn.Linear(4, 4)

    def loss_fn(m, batch):
        return ((m(batch[0]) - batch[0]) ** 2).mean()

    history = fit(model, loss_fn, (torch.randn(640, 4),), time_budget=5.0, batch_size=8,
                  progress=False, clock=lambda: float(next(ticks))).history
    assert history.last["step"] < 80                   # stopped by the fake clock, mid-epoch
    assert history.last["epoch"] < 1


# ----------------------------------------------------------------------------- result, limits

def test_fit_returns_a_train_result_and_stops_at_max_steps() -> None:
    x, y = regression_data(40)
    done = fit(make_model(), regression_loss, (x, y), epochs=2, batch_size=16, progress=False)
    assert isinstance(done, training.TrainResult)
    assert (done.steps, done.stopped_by, len(done.history)) == (6, "epochs", 2)
    assert done.seconds == pytest.approx(done.history.last["elapsed"])
    cut = fit(make_model(), regression_loss, (x, y), max_steps=4, batch_size=16, progress=False)
    assert (cut.steps, cut.stopped_by) == (4, "max_steps")
    assert cut.history.last["epoch"] == pytest.approx(1 + 1 / 3)     # stopped inside epoch 2
    # the same first four steps as the longer run: max_steps does not change the numbers
    assert cut.history[0] | {k: 0 for k in TIMING} == done.history[0] | {k: 0 for k in TIMING}


def test_step_checkpoints_resume_exactly_after_a_crash(tmp_path: Path) -> None:
    """checkpoint_every counts steps: a run that dies mid-epoch resumes from the last
    multiple of checkpoint_every and ends as if nothing had happened."""
    x, y = regression_data(40)
    kwargs = dict(epochs=3, batch_size=8, lr=1e-2, progress=False)   # 5 steps per epoch
    reference = make_model()
    ref = fit(reference, regression_loss, (x, y), **kwargs)
    calls = 0

    def crashing_loss(model: nn.Module, batch: tuple[Tensor, ...]) -> dict[str, Tensor]:
        nonlocal calls
        calls += 1
        if calls == 10:                                       # step 10, inside epoch 2
            raise RuntimeError("power cut")
        return regression_loss(model, batch)

    ckpt = tmp_path / "steps.pt"
    with pytest.raises(RuntimeError, match="power cut"):
        fit(make_model(), crashing_loss, (x, y), checkpoint_path=ckpt, checkpoint_every=3,
            **kwargs)
    state = load_checkpoint(ckpt)
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (9, 1, 4)
    resumed = make_model(seed=7)
    result = fit(resumed, regression_loss, (x, y), checkpoint_path=ckpt, checkpoint_every=3,
                 resume=True, **kwargs)
    assert result.steps == 15 and result.stopped_by == "epochs"
    assert all(torch.equal(a, b) for a, b in zip(params(reference), params(resumed), strict=True))
    assert without_timing(result.history) == without_timing(ref.history)


def test_each_loop_refuses_the_other_loops_checkpoint(tmp_path: Path) -> None:
    from course_utils.models.dcgan import Discriminator, Generator

    x, y = regression_data()
    fit(make_model(), regression_loss, (x, y), epochs=1, checkpoint_path=tmp_path / "fit.pt",
        progress=False)
    images = torch.rand(16, 1, 28, 28)
    G, D = Generator(latent_dim=4, width=2), Discriminator(width=2)
    with pytest.raises(ValueError, match="not written by fit_gan"):
        training.fit_gan(G, D, images, max_steps=1, batch_size=8, progress=False, device="cpu",
                         checkpoint_path=tmp_path / "fit.pt", resume=True)
    training.fit_gan(G, D, images, max_steps=1, batch_size=8, progress=False, device="cpu",
                     checkpoint_path=tmp_path / "gan.pt")
    with pytest.raises(ValueError, match="not written by fit"):
        fit(make_model(), regression_loss, (x, y), epochs=2, progress=False,
            checkpoint_path=tmp_path / "gan.pt", resume=True)


def test_fit_gan_time_budget_follows_the_given_clock() -> None:
    from course_utils.models.dcgan import Discriminator, Generator

    ticks = iter(range(10**6))
    G, D = Generator(latent_dim=4, width=2), Discriminator(width=2)
    result = training.fit_gan(G, D, torch.rand(64, 1, 28, 28), time_budget=30.0, batch_size=4,
                              progress=False, device="cpu", clock=lambda: float(next(ticks)))
    assert result.stopped_by == "time" and result.steps < 16         # inside the first epoch
    assert isinstance(result, training.TrainResult) and result.snapshots
