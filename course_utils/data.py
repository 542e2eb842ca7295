"""Datasets held in memory as tensors, and the batch iterator that slices them.

``load_dataset("fashion-mnist")`` looks for the original IDX files in these places, in order,
and uses the first that has all four:

1. the ``root`` argument;
2. the directory in the environment variable ``COURSE_DATA_DIR``;
3. the Debian/Ubuntu package path (``apt-get install dataset-fashion-mnist``);
4. the user cache (``$COURSE_CACHE_DIR``, else ``$XDG_CACHE_HOME/course_utils``, else
   ``~/.cache/course_utils``), then ``<dataset name>/`` inside it;
5. a download from the dataset's original host into the user cache, verified by SHA-256.

If none works it raises :class:`DataNotFoundError`, which lists every source tried and how to
get the data. With ``allow_fallback=True`` it instead returns scikit-learn's bundled 8x8 digits,
resized to 28x28, and says so in ``Dataset.name``.

Both environment variables are read by :mod:`course_utils.config` (:func:`config.data_dir`,
:func:`config.cache_dir`), like every other switch; so are the smoke-mode subset sizes.

Images come back as float32 tensors of shape (N, 1, 28, 28) with pixels in [0, 1]; labels as
int64 tensors of shape (N,). Nothing is read through a DataLoader: :func:`iterate_batches`
slices the in-memory tensors, which is faster for data of this size.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import config
from .config import cache_dir

__all__ = [
    "DataError", "DataNotFoundError", "CorruptDataError", "Dataset", "DatasetSpec", "SPECS",
    "load_dataset", "read_idx", "download_file", "iterate_batches", "to_minus_one_one",
    "to_zero_one", "cache_dir",
]


class DataError(RuntimeError):
    """Base class for every data problem this module reports."""


class DataNotFoundError(DataError):
    """No source had the dataset. The message lists each source tried and how to get it."""


class CorruptDataError(DataError):
    """A data file exists but is damaged: bad magic number, wrong size, truncated, bad checksum."""


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset lives and what its files must hash to.

    ``files`` maps a role (``train_images``, ``train_labels``, ``test_images``, ``test_labels``)
    to ``(file name, SHA-256 of that file)``. ``mirrors`` are base URLs tried in order.
    """

    name: str
    files: dict[str, tuple[str, str]]
    mirrors: tuple[str, ...]
    system_dirs: tuple[str, ...]
    classes: tuple[str, ...]
    apt_package: str | None = None


FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

SPECS: dict[str, DatasetSpec] = {
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        files={
            "train_images": ("train-images-idx3-ubyte.gz",
                             "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"),
            "train_labels": ("train-labels-idx1-ubyte.gz",
                             "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"),
            "test_images": ("t10k-images-idx3-ubyte.gz",
                            "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"),
            "test_labels": ("t10k-labels-idx1-ubyte.gz",
                            "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"),
        },
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        classes=FASHION_CLASSES,
        apt_package="dataset-fashion-mnist",
    ),
    "mnist": DatasetSpec(
        name="mnist",
        files={
            "train_images": ("train-images-idx3-ubyte.gz",
                             "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
            "train_labels": ("train-labels-idx1-ubyte.gz",
                             "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
            "test_images": ("t10k-images-idx3-ubyte.gz",
                            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
            "test_labels": ("t10k-labels-idx1-ubyte.gz",
                            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
        },
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "http://yann.lecun.com/exdb/mnist/"),
        system_dirs=("/usr/share/datasets/mnist",),
        classes=tuple(str(d) for d in range(10)),
        apt_package=None,
    ),
}


@dataclass
class Dataset:
    """A labelled image dataset held in memory.

    Attributes:
        name: ``"fashion-mnist"``, ``"mnist"`` or ``"digits"`` (the offline fallback).
        source: where the data came from (a directory, or the fallback's description).
        classes: class names, indexed by label.
        train_x, test_x: float32 images, shape (N, 1, 28, 28), pixels in [0, 1].
        train_y, test_y: int64 labels, shape (N,).
        is_fallback: True when the bundled digits stand in for the requested dataset.
    """

    name: str
    source: str
    classes: tuple[str, ...]
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    is_fallback: bool = False
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={tuple(self.train_x.shape)}, "
                f"test={tuple(self.test_x.shape)}, source={self.source!r})")

    def describe(self) -> str:
        """A sentence a notebook can print: which data, how much, from where."""
        text = (f"Dataset: {self.name} - {len(self.train_x):,} training and "
                f"{len(self.test_x):,} test images of {tuple(self.train_x.shape[1:])}, "
                f"from {self.source}")
        if self.is_fallback:
            text = ("WARNING: Fashion-MNIST was not found, so the course is using scikit-learn's "
                    "8x8 digits resized to 28x28. Results will differ from the text.\n" + text)
        return text


# ----------------------------------------------------------------------------- IDX files

_IDX_DTYPES = {0x08: np.uint8}


def read_idx(path: str | os.PathLike[str], expected_ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into a NumPy array, validating it fully.

    Checks the magic number (two zero bytes, the unsigned-byte type code 0x08, the number of
    dimensions), and that the payload has exactly as many bytes as the header promises.

    Raises:
        CorruptDataError: naming the file and what to do, for any damaged or truncated file.
    """
    path = Path(path)
    fix = (f"Delete {path} and fetch it again (or reinstall the package that provided it); "
           "the course never uses a damaged file.")
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise CorruptDataError(f"{path}: cannot be decompressed/read ({exc}). {fix}") from exc
    if len(raw) < 4:
        raise CorruptDataError(f"{path}: only {len(raw)} bytes, too short for an IDX header. {fix}")
    zero1, zero2, type_code, ndim = raw[0], raw[1], raw[2], raw[3]
    if zero1 != 0 or zero2 != 0 or type_code not in _IDX_DTYPES or ndim == 0:
        raise CorruptDataError(
            f"{path}: bad magic number 0x{raw[:4].hex()} (expected 0x000008NN for unsigned-byte "
            f"IDX data). This is not an IDX file. {fix}")
    if expected_ndim is not None and ndim != expected_ndim:
        raise CorruptDataError(f"{path}: has {ndim} dimensions, expected {expected_ndim} "
                               f"(images have 3, labels 1). Is it the right file? {fix}")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise CorruptDataError(f"{path}: truncated inside the header. {fix}")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header_len])
    expected = int(np.prod(dims, dtype=np.int64))
    payload = len(raw) - header_len
    if payload != expected:
        what = "truncated" if payload < expected else "longer than its header says"
        raise CorruptDataError(f"{path}: {what}: header promises {expected:,} bytes of data for "
                               f"dims {dims}, found {payload:,}. {fix}")
    return np.frombuffer(raw, dtype=_IDX_DTYPES[type_code], offset=header_len).reshape(dims)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_file(url: str, dest: Path, sha256: str, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying its SHA-256 before keeping it.

    The file is written to ``dest.part`` first and renamed only once its checksum matches,
    so an interrupted or corrupted download never leaves a file that looks valid.

    Raises:
        CorruptDataError: if the checksum does not match (the partial file is deleted).
        OSError / urllib.error.URLError: if the URL cannot be fetched.
    """
    from .config import progress_bar
    tqdm = progress_bar()   # tqdm.auto, or plain text (COURSE_PROGRESS)

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name,
                      disable=total is not None and total < 1 << 20) as bar:
                for block in iter(lambda: response.read(1 << 16), b""):
                    out.write(block)
                    bar.update(len(block))
        actual = _sha256(part)
        if actual != sha256:
            raise CorruptDataError(
                f"{url}: downloaded file has SHA-256 {actual}, expected {sha256}. The download "
                f"was damaged or the server sent a different file; it was deleted. Try again "
                f"later, or put the original files in a folder and set COURSE_DATA_DIR.")
        os.replace(part, dest)
        return dest
    finally:
        part.unlink(missing_ok=True)


def _find_file(directory: Path, file_name: str) -> Path | None:
    """The file itself, or its uncompressed twin (``x.gz`` -> ``x``)."""
    for candidate in (directory / file_name, directory / file_name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _load_from_dir(spec: DatasetSpec, directory: Path) -> dict[str, np.ndarray]:
    """Read all four files from one directory, or raise FileNotFoundError naming the missing."""
    paths = {role: _find_file(directory, name) for role, (name, _) in spec.files.items()}
    missing = [spec.files[role][0] for role, p in paths.items() if p is None]
    if missing:
        raise FileNotFoundError(f"missing {', '.join(missing)}")
    arrays = {role: read_idx(p, expected_ndim=3 if role.endswith("images") else 1)
              for role, p in paths.items() if p is not None}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(images) != len(labels):
            raise CorruptDataError(
                f"{directory}: {split} split has {len(images)} images but {len(labels)} labels; "
                "the files do not belong together. Replace them with the original four files.")
        if labels.size and labels.max() >= len(spec.classes):
            raise CorruptDataError(f"{directory}: {split} labels go up to {labels.max()}, but "
                                   f"{spec.name} has {len(spec.classes)} classes.")
    return arrays


def _download(spec: DatasetSpec, directory: Path) -> None:
    errors = []
    for file_name, sha in spec.files.values():
        if (directory / file_name).is_file():
            continue
        for mirror in spec.mirrors:
            try:
                download_file(mirror.rstrip("/") + "/" + file_name, directory / file_name, sha)
                break
            except CorruptDataError:
                raise
            except (OSError, urllib.error.URLError, ValueError) as exc:
                errors.append(f"{mirror}{file_name}: {exc}")
        else:
            raise FileNotFoundError("download failed: " + "; ".join(errors))


def _to_dataset(spec: DatasetSpec, arrays: dict[str, np.ndarray], source: str) -> Dataset:
    def images(a: np.ndarray) -> Tensor:
        return torch.from_numpy(a.astype(np.float32) / 255.0).unsqueeze(1)  # (N, 1, H, W)

    def labels(a: np.ndarray) -> Tensor:
        return torch.from_numpy(a.astype(np.int64))

    return Dataset(spec.name, source, spec.classes,
                   images(arrays["train_images"]), labels(arrays["train_labels"]),
                   images(arrays["test_images"]), labels(arrays["test_labels"]))


def load_digits_fallback(size: int = 28, seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 digits, resized to ``size`` x ``size``, split 80/20."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)  # (1797, 1, 8, 8)
    inner = size - 4                                                          # keep a 2-px border
    x = torch.nn.functional.interpolate(x, size=(inner, inner), mode="bilinear",
                                        align_corners=False).clamp(0, 1)
    x = torch.nn.functional.pad(x, (2, 2, 2, 2))                              # (1797, 1, 28, 28)
    y = torch.from_numpy(digits.target.astype(np.int64))
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_train = int(0.8 * len(x))
    train, test = order[:n_train], order[n_train:]
    return Dataset("digits", "scikit-learn's bundled 8x8 digits (offline fallback)",
                   tuple(str(d) for d in range(10)), x[train], y[train], x[test], y[test],
                   is_fallback=True)


def _subset(ds: Dataset, max_train: int | None, max_test: int | None) -> Dataset:
    if max_train is not None:
        ds.train_x, ds.train_y = ds.train_x[:max_train], ds.train_y[:max_train]
    if max_test is not None:
        ds.test_x, ds.test_y = ds.test_x[:max_test], ds.test_y[:max_test]
    return ds


def local_sources(spec: DatasetSpec, root: str | os.PathLike[str] | None = None
                  ) -> list[tuple[str, Path]]:
    """The local directories tried for ``spec``, in order, as ``(label, directory)``."""
    sources: list[tuple[str, Path]] = []
    if root is not None:
        sources.append(("root argument", Path(root).expanduser()))
    env_dir = config.data_dir()
    if env_dir is not None:
        sources.append(("COURSE_DATA_DIR", env_dir))
    sources += [("system package", Path(d)) for d in spec.system_dirs]
    sources.append(("user cache", cache_dir() / spec.name))
    return sources


def find_local(name: str = "fashion-mnist", root: str | os.PathLike[str] | None = None
               ) -> Path | None:
    """The first local directory holding all of the dataset's files, without reading them."""
    spec = SPECS[name]
    for _, directory in local_sources(spec, root):
        if all(_find_file(directory, f) for f, _ in spec.files.values()):
            return directory
    return None


def load_dataset(name: str = "fashion-mnist", root: str | os.PathLike[str] | None = None, *,
                 allow_fallback: bool = False, download: bool = True,
                 max_train: int | None = None, max_test: int | None = None,
                 spec: DatasetSpec | None = None) -> Dataset:
    """Load a dataset into memory, trying the sources in the module docstring in order.

    Args:
        name: ``"fashion-mnist"`` (default) or ``"mnist"``.
        root: a directory holding the four IDX files (``.gz`` or uncompressed); tried first.
        allow_fallback: return scikit-learn's digits instead of raising when nothing is found.
        download: try downloading into the user cache when no local copy exists.
        max_train, max_test: keep only the first N images of each split. In smoke mode they
            default to ``config.SMOKE_TRAIN`` and ``config.SMOKE_TEST``.
        spec: override the dataset description (tests use this for small files).

    Raises:
        DataNotFoundError: no source had the data and ``allow_fallback`` is False.
        CorruptDataError: a file was found but is damaged. This is never silently skipped.
    """
    if spec is None:
        if name not in SPECS:
            raise ValueError(f"Unknown dataset {name!r}: choose one of {sorted(SPECS)}.")
        spec = SPECS[name]
    if config.is_smoke():
        max_train = config.SMOKE_TRAIN if max_train is None else max_train
        max_test = config.SMOKE_TEST if max_test is None else max_test

    cache = cache_dir() / spec.name
    tried: list[str] = []
    for label, directory in local_sources(spec, root):
        if not directory.is_dir():
            tried.append(f"{label}: {directory} (no such directory)")
            continue
        try:
            arrays = _load_from_dir(spec, directory)
        except FileNotFoundError as exc:
            tried.append(f"{label}: {directory} ({exc})")
            continue
        return _subset(_to_dataset(spec, arrays, str(directory)), max_train, max_test)

    if download:
        try:
            _download(spec, cache)
            arrays = _load_from_dir(spec, cache)
            return _subset(_to_dataset(spec, arrays, f"{cache} (downloaded)"), max_train, max_test)
        except FileNotFoundError as exc:
            tried.append(f"download from {', '.join(spec.mirrors)}: {exc}")
    else:
        tried.append("download: skipped (download=False)")

    if allow_fallback:
        fallback = load_digits_fallback()
        fallback.notes = [f"{spec.name} not found; tried:"] + tried
        return _subset(fallback, max_train, max_test)

    apt = spec.apt_package
    how = [f"  - Debian/Ubuntu: sudo apt-get install {apt}"] if apt else []
    how += [f"  - or put the four files ({', '.join(n for n, _ in spec.files.values())}) in a "
            "folder and set COURSE_DATA_DIR to it, or pass root=...",
            "  - or allow the download when online (download=True),",
            "  - or pass allow_fallback=True to use scikit-learn's bundled digits offline."]
    raise DataNotFoundError(f"Could not find the {spec.name} dataset. Sources tried, in order:\n"
                            + "\n".join(f"  {i}. {t}" for i, t in enumerate(tried, 1))
                            + "\nHow to get it:\n" + "\n".join(how))


# ----------------------------------------------------------------------------- batches

def iterate_batches(*tensors: Tensor, batch_size: int = 128, shuffle: bool = True,
                    generator: torch.Generator | None = None,
                    drop_last: bool = False) -> Iterator[tuple[Tensor, ...]]:
    """Yield aligned mini-batches sliced from in-memory tensors.

    Args:
        tensors: one or more tensors with the same first dimension N (e.g. images, labels).
        batch_size: rows per batch.
        shuffle: visit rows in a random order drawn from ``generator`` (seed it for
            reproducible epochs); otherwise in storage order.
        drop_last: skip a final batch smaller than ``batch_size``.

    Yields:
        Tuples with one (B, ...) slice per input tensor.
    """
    if not tensors:
        raise ValueError("iterate_batches needs at least one tensor.")
    n = tensors[0].shape[0]
    for i, t in enumerate(tensors[1:], 1):
        if t.shape[0] != n:
            raise ValueError(f"iterate_batches: tensor {i} has {t.shape[0]} rows but tensor 0 has "
                             f"{n}; pass tensors that describe the same examples.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    order = torch.randperm(n, generator=generator) if shuffle else None
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        if drop_last and stop - start < batch_size:
            break
        if order is None:
            yield tuple(t[start:stop] for t in tensors)
        else:
            idx = order[start:stop]
            yield tuple(t[idx.to(t.device)] for t in tensors)


def to_minus_one_one(x: Tensor) -> Tensor:
    """Map pixels from [0, 1] to [-1, 1] (the range of a tanh generator)."""
    return x * 2.0 - 1.0


def to_zero_one(x: Tensor) -> Tensor:
    """Map pixels from [-1, 1] back to [0, 1]."""
    return (x + 1.0) / 2.0
