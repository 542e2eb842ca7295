"""Data loading: IDX validation, source order, download with checksum, fallback, batches."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from course_utils import config, data
from course_utils.data import (
    CorruptDataError,
    DataNotFoundError,
    DatasetSpec,
    iterate_batches,
    load_dataset,
    read_idx,
)

ROLES = {"train_images": "train-images-idx3-ubyte.gz", "train_labels": "train-labels-idx1-ubyte.gz",
         "test_images": "t10k-images-idx3-ubyte.gz", "test_labels": "t10k-labels-idx1-ubyte.gz"}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as an IDX file (the format the original datasets use)."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_dataset(directory: Path, n_train: int = 12, n_test: int = 6, seed: int = 0) -> dict:
    """Write four small gzipped IDX files; return {role: (name, sha256)} for a DatasetSpec."""
    rng = np.random.default_rng(seed)
    arrays = {"train_images": rng.integers(0, 256, (n_train, 28, 28)),
              "train_labels": rng.integers(0, 10, n_train),
              "test_images": rng.integers(0, 256, (n_test, 28, 28)),
              "test_labels": rng.integers(0, 10, n_test)}
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for role, name in ROLES.items():
        payload = gzip.compress(idx_bytes(arrays[role]))
        (directory / name).write_bytes(payload)
        files[role] = (name, hashlib.sha256(payload).hexdigest())
    return files


def make_spec(files: dict, mirrors=("file:///nonexistent/",), system_dirs=()) -> DatasetSpec:
    return DatasetSpec(name="tiny", files=files, mirrors=tuple(mirrors),
                       system_dirs=tuple(system_dirs),
                       classes=tuple(str(i) for i in range(10)))


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("COURSE_DATA_DIR", raising=False)
    monkeypatch.setenv("COURSE_SMOKE", "0")


def test_good_files_load_as_unit_range_tensors(tmp_path):
    files = write_dataset(tmp_path / "d")
    ds = load_dataset(root=tmp_path / "d", spec=make_spec(files), download=False)
    assert ds.train_x.shape == (12, 1, 28, 28) and ds.test_x.shape == (6, 1, 28, 28)
    assert ds.train_x.dtype == torch.float32 and ds.train_y.dtype == torch.int64
    assert 0.0 <= ds.train_x.min() and ds.train_x.max() <= 1.0
    raw = read_idx(tmp_path / "d" / ROLES["train_images"])
    assert torch.allclose(ds.train_x[:, 0], torch.from_numpy(raw / 255.0).float())
    assert ds.source == str(tmp_path / "d") and not ds.is_fallback


def test_uncompressed_files_are_accepted(tmp_path):
    files = write_dataset(tmp_path / "d")
    for name, _ in files.values():
        gz = tmp_path / "d" / name
        gz.with_suffix("").write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    ds = load_dataset(root=tmp_path / "d", spec=make_spec(files), download=False)
    assert len(ds.train_x) == 12


def test_bad_magic_number_names_the_file(tmp_path):
    path = tmp_path / "bad.idx"
    path.write_bytes(b"\x12\x34\x08\x03" + b"\0" * 40)
    with pytest.raises(CorruptDataError, match=r"bad\.idx.*bad magic number.*Delete"):
        read_idx(path)


def test_truncated_file_is_rejected_not_returned(tmp_path):
    payload = idx_bytes(np.zeros((3, 28, 28)))
    path = tmp_path / "trunc.idx"
    path.write_bytes(payload[:-100])
    with pytest.raises(CorruptDataError, match=r"trunc\.idx.*truncated"):
        read_idx(path)


def test_truncated_gzip_is_rejected(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((3, 28, 28))))[:-20])
    with pytest.raises(CorruptDataError, match=r"x\.gz"):
        read_idx(path)


def test_wrong_dimensions_are_rejected(tmp_path):
    path = tmp_path / "labels_as_images.idx"
    path.write_bytes(idx_bytes(np.zeros(5)))
    with pytest.raises(CorruptDataError, match="1 dimensions, expected 3"):
        read_idx(path, expected_ndim=3)


def test_corrupt_file_in_a_source_is_an_error_not_skipped(tmp_path):
    files = write_dataset(tmp_path / "d")
    (tmp_path / "d" / ROLES["test_images"]).write_bytes(b"garbage")
    with pytest.raises(CorruptDataError, match="t10k-images"):
        load_dataset(root=tmp_path / "d", spec=make_spec(files), download=False)


def test_missing_everywhere_lists_every_source_tried(tmp_path, monkeypatch):
    files = write_dataset(tmp_path / "elsewhere")
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "env_dir"))
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / ROLES["train_images"]).write_bytes(b"")
    spec = make_spec(files, mirrors=[(tmp_path / "no_mirror").as_uri() + "/"],
                     system_dirs=[str(tmp_path / "system")])
    with pytest.raises(DataNotFoundError) as info:
        load_dataset(root=tmp_path / "half", spec=spec)
    msg = str(info.value)
    for expected in ["root argument", "missing train-labels", "COURSE_DATA_DIR", "env_dir",
                     "system package", "user cache", "download", "allow_fallback=True"]:
        assert expected in msg, f"{expected!r} missing from:\n{msg}"
    assert msg.index("root argument") < msg.index("COURSE_DATA_DIR") < msg.index("system package") \
        < msg.index("user cache") < msg.index("download from")


def test_source_order_prefers_root_then_env(tmp_path, monkeypatch):
    files = write_dataset(tmp_path / "root", n_train=12)
    write_dataset(tmp_path / "env", n_train=20)
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "env"))
    spec = make_spec(files)
    assert len(load_dataset(root=tmp_path / "root", spec=spec).train_x) == 12
    assert len(load_dataset(spec=spec).train_x) == 20


def test_download_from_file_url_is_verified_and_cached(tmp_path):
    files = write_dataset(tmp_path / "mirror")
    spec = make_spec(files, mirrors=[(tmp_path / "mirror").as_uri() + "/"])
    ds = load_dataset(spec=spec)
    cache = tmp_path / "cache" / "tiny"
    assert ds.source.startswith(str(cache)) and "downloaded" in ds.source
    assert sorted(p.name for p in cache.iterdir()) == sorted(ROLES.values())
    # Second call finds the cache without downloading.
    assert load_dataset(spec=spec, download=False).source == str(cache)


def test_download_with_wrong_checksum_raises_and_keeps_nothing(tmp_path):
    files = write_dataset(tmp_path / "mirror")
    files["train_labels"] = (files["train_labels"][0], "0" * 64)
    spec = make_spec(files, mirrors=[(tmp_path / "mirror").as_uri() + "/"])
    with pytest.raises(CorruptDataError, match=r"train-labels-idx1-ubyte\.gz.*SHA-256"):
        load_dataset(spec=spec)
    cache = tmp_path / "cache" / "tiny"
    assert not (cache / "train-labels-idx1-ubyte.gz").exists()
    assert not list(cache.glob("*.part"))


def test_download_over_http_from_localhost(tmp_path):
    files = write_dataset(tmp_path / "served")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=tmp_path / "served")
    handler.log_message = lambda *a, **k: None  # keep test output clean
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        spec = make_spec(files, mirrors=[f"http://127.0.0.1:{port}/missing/",
                                         f"http://127.0.0.1:{port}/"])
        ds = load_dataset(spec=spec)   # first mirror 404s, second works
        assert len(ds.train_x) == 12
    finally:
        server.shutdown()
        server.server_close()


def test_fallback_only_when_allowed(tmp_path):
    spec = make_spec({r: (n, "0" * 64) for r, n in ROLES.items()})
    with pytest.raises(DataNotFoundError):
        load_dataset(spec=spec, download=False)
    ds = load_dataset(spec=spec, download=False, allow_fallback=True)
    assert ds.name == "digits" and ds.is_fallback
    assert ds.train_x.shape[1:] == (1, 28, 28) and 0 <= ds.train_x.min() <= ds.train_x.max() <= 1
    assert "WARNING" in ds.describe()
    assert len(ds.train_x) + len(ds.test_x) == 1797


def test_smoke_mode_takes_a_subset(tmp_path, monkeypatch):
    files = write_dataset(tmp_path / "d", n_train=30, n_test=9)
    monkeypatch.setattr(config, "SMOKE_TRAIN", 10)          # the sizes live in config
    monkeypatch.setattr(config, "SMOKE_TEST", 4)
    monkeypatch.setenv("COURSE_SMOKE", "1")
    ds = load_dataset(root=tmp_path / "d", spec=make_spec(files))
    assert (len(ds.train_x), len(ds.test_x)) == (10, 4)
    full = load_dataset(root=tmp_path / "d", spec=make_spec(files), max_train=20)
    assert (len(full.train_x), len(full.test_x)) == (20, 4)   # an explicit size wins
    monkeypatch.setenv("COURSE_SMOKE", "0")
    ds = load_dataset(root=tmp_path / "d", spec=make_spec(files))
    assert (len(ds.train_x), len(ds.test_x)) == (30, 9)


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="fashion-mnist"):
        load_dataset("cifar")


def test_iterate_batches_covers_every_row_once_and_is_seeded():
    x = torch.arange(10).float().unsqueeze(1)
    y = torch.arange(10)
    batches = list(iterate_batches(x, y, batch_size=4, generator=torch.Generator().manual_seed(1)))
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    seen = torch.cat([b[1] for b in batches])
    assert sorted(seen.tolist()) == list(range(10))
    assert all(torch.equal(bx[:, 0].long(), by) for bx, by in batches)  # rows stay aligned
    again = list(iterate_batches(x, y, batch_size=4, generator=torch.Generator().manual_seed(1)))
    assert torch.equal(seen, torch.cat([b[1] for b in again]))
    assert len(list(iterate_batches(x, batch_size=4, drop_last=True))) == 2
    ordered = torch.cat([b[0] for b in iterate_batches(x, batch_size=3, shuffle=False)])
    assert torch.equal(ordered, x)


def test_iterate_batches_rejects_misaligned_tensors():
    with pytest.raises(ValueError, match="tensor 1 has 3 rows"):
        list(iterate_batches(torch.zeros(4, 2), torch.zeros(3)))


def test_real_fashion_mnist_when_installed():
    if data.find_local("fashion-mnist") is None:
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    ds = load_dataset("fashion-mnist", download=False)
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert torch.bincount(ds.test_y).tolist() == [1000] * 10
