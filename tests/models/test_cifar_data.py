"""Tests for models.cifar_data on tiny fake data sets in every accepted format."""

from __future__ import annotations

import os
import pickle
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from models.cifar_data import (
    CLASSES,
    CifarArrays,
    DataError,
    load_cifar10,
    resolve_source,
    stratified_split,
)

PER_CLASS = {"train": 3, "test": 2}
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
REAL_ARCHIVE = Path(__file__).resolve().parents[2].parent / "shared/data/cifar10-jpeg.tar.gz"


# --------------------------------------------------------------------------- fake data sets


@pytest.fixture(scope="module")
def expected() -> CifarArrays:
    """Random images in the loader's order: split, then class, then file name."""
    rng = np.random.default_rng(0)
    parts = {}
    for split, per_class in PER_CLASS.items():
        n = per_class * len(CLASSES)
        images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        labels = np.repeat(np.arange(len(CLASSES)), per_class)
        parts[split] = (torch.from_numpy(images), torch.from_numpy(labels).long())
    return CifarArrays(*parts["train"], *parts["test"])


def split_arrays(arrays: CifarArrays, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    if split == "train":
        return arrays.train_images, arrays.train_labels
    return arrays.test_images, arrays.test_labels


def write_batches(folder: Path, arrays: CifarArrays) -> Path:
    """torchvision's cifar-10-batches-py, pickled exactly like the official batches."""
    folder.mkdir(parents=True)
    train_chunks = zip(
        TRAIN_BATCHES,
        np.array_split(arrays.train_images.numpy(), 5),
        np.array_split(arrays.train_labels.numpy(), 5),
        strict=True,
    )
    test_chunk = ("test_batch", arrays.test_images.numpy(), arrays.test_labels.numpy())
    for name, images, labels in [*train_chunks, test_chunk]:
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(label) for label in labels],
            b"data": images.reshape(len(images), -1),
            b"filenames": [f"img_{i}.png".encode() for i in range(len(images))],
        }
        with open(folder / name, "wb") as out:
            pickle.dump(batch, out)
    return folder


def write_tree(root: Path, arrays: CifarArrays, ext: str) -> Path:
    """train/<class>/NNNN.<ext> and test/<class>/NNNN.<ext>."""
    for split in PER_CLASS:
        images, labels = split_arrays(arrays, split)
        counters = dict.fromkeys(CLASSES, 0)
        for image, label in zip(images, labels.tolist(), strict=True):
            cls = CLASSES[label]
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            pil = Image.fromarray(image.permute(1, 2, 0).numpy())
            options = {"quality": 100, "subsampling": 0} if ext == ".jpg" else {}
            pil.save(folder / f"{counters[cls]:04d}{ext}", **options)
            counters[cls] += 1
    return root


def make_tar(archive: Path, folder: Path, arcname: str) -> Path:
    """Archive folder's files as arcname/..., in reverse order so the loader must sort."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    mode = "w" if archive.suffix == ".tar" else "w:gz"
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, mode) as tar:
        for path in reversed(files):
            tar.add(path, arcname=str(Path(arcname) / path.relative_to(folder)))
    return archive


def assert_equal_arrays(actual: CifarArrays, wanted: CifarArrays, atol: int = 0) -> None:
    for split in PER_CLASS:
        images, labels = split_arrays(actual, split)
        want_images, want_labels = split_arrays(wanted, split)
        assert images.dtype == torch.uint8 and labels.dtype == torch.int64
        assert images.shape == want_images.shape and images.is_contiguous()
        assert torch.equal(labels, want_labels)
        diff = (images.int() - want_images.int()).abs().max().item()
        assert diff <= atol, f"{split} pixels differ by {diff}"


def load_twice(source: Path | str, cache_dir: Path) -> tuple[CifarArrays, CifarArrays]:
    """Load, then load again and check the second load came from the untouched cache file."""
    first = load_cifar10(source, cache_dir=cache_dir)
    [cache_file] = cache_dir.glob("cifar10-*.pt")
    mtime = cache_file.stat().st_mtime_ns
    second = load_cifar10(source, cache_dir=cache_dir)
    assert cache_file.stat().st_mtime_ns == mtime
    assert list(cache_dir.iterdir()) == [cache_file], "temporary files left behind"
    assert_equal_arrays(second, first)
    return first, second


def assert_one_line_error(error: DataError, *words: str) -> None:
    message = str(error)
    assert "\n" not in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize("pass_parent", [False, True], ids=["batch-folder", "root"])
def test_pickled_folder(tmp_path, expected, pass_parent):
    batches = write_batches(tmp_path / "src" / "cifar-10-batches-py", expected)
    source = batches.parent if pass_parent else batches
    first, _ = load_twice(source, tmp_path / "cache")
    assert_equal_arrays(first, expected)


@pytest.mark.parametrize("nested", [False, True], ids=["tree", "root-with-tree"])
def test_png_tree_round_trips_exactly(tmp_path, expected, nested):
    tree = write_tree(tmp_path / "src" / "cifar10", expected, ".png")
    first, _ = load_twice(tree.parent if nested else tree, tmp_path / "cache")
    assert_equal_arrays(first, expected)


def test_jpeg_tree(tmp_path, expected):
    tree = write_tree(tmp_path / "src", expected, ".jpg")
    first, _ = load_twice(tree, tmp_path / "cache")
    assert_equal_arrays(first, expected, atol=8)  # JPEG is lossy even at quality 100


@pytest.mark.parametrize("name", ["cifar.tar.gz", "cifar.tar"])
def test_archive_of_tree(tmp_path, expected, name):
    tree = write_tree(tmp_path / "src", expected, ".png")
    archive = make_tar(tmp_path / name, tree, "cifar10")
    first, _ = load_twice(archive, tmp_path / "cache")
    assert_equal_arrays(first, expected)


def test_archive_of_tree_without_top_folder(tmp_path, expected):
    tree = write_tree(tmp_path / "src", expected, ".png")
    archive = make_tar(tmp_path / "cifar.tar", tree, ".")
    assert_equal_arrays(load_cifar10(archive), expected)


def test_archive_of_pickled_folder(tmp_path, expected):
    batches = write_batches(tmp_path / "src" / "cifar-10-batches-py", expected)
    (batches / "readme.html").write_text("not a batch")  # the official archive has extras
    archive = make_tar(tmp_path / "cifar-10-python.tgz", batches, "cifar-10-batches-py")
    first, _ = load_twice(archive, tmp_path / "cache")
    assert_equal_arrays(first, expected)


# --------------------------------------------------------------------------- cache


def test_no_cache_dir_writes_nothing(tmp_path, expected):
    tree = write_tree(tmp_path / "src", expected, ".png")
    before = sorted(tmp_path.rglob("*"))
    assert_equal_arrays(load_cifar10(tree), expected)
    assert sorted(tmp_path.rglob("*")) == before


def test_corrupt_cache_is_rebuilt(tmp_path, expected):
    tree = write_tree(tmp_path / "src", expected, ".png")
    cache_dir = tmp_path / "cache"
    load_cifar10(tree, cache_dir=cache_dir)
    [cache_file] = cache_dir.glob("cifar10-*.pt")
    cache_file.write_bytes(b"half a file")
    assert_equal_arrays(load_cifar10(tree, cache_dir=cache_dir), expected)
    assert set(torch.load(cache_file, weights_only=True)) == {
        "train_images",
        "train_labels",
        "test_images",
        "test_labels",
    }


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "the file ends early"),
        (
            {"train_images": torch.zeros(1, 3, 32, 32, dtype=torch.uint8)},
            "it holds no train_labels",
        ),
        ([1, 2], "it holds a list, not a dict of tensors"),
    ],
    ids=["empty", "missing-key", "not-a-dict"],
)
def test_a_bad_cache_says_what_is_wrong_with_it(tmp_path, expected, caplog, content, reason):
    tree = write_tree(tmp_path / "src", expected, ".png")
    cache_dir = tmp_path / "cache"
    load_cifar10(tree, cache_dir=cache_dir)
    [cache_file] = cache_dir.glob("cifar10-*.pt")
    if isinstance(content, bytes):
        cache_file.write_bytes(content)
    else:
        torch.save(content, cache_file)
    assert_equal_arrays(load_cifar10(tree, cache_dir=cache_dir), expected)
    [warning] = caplog.messages
    assert reason in warning and "()" not in warning and "('" not in warning


def test_decoding_is_announced_once_and_cache_hits_are_silent(tmp_path, expected):
    tree = write_tree(tmp_path / "src", expected, ".png")
    said: list[str] = []
    load_cifar10(tree, cache_dir=tmp_path / "cache", announce=said.append)
    assert len(said) == 1 and said[0].startswith(f"decoding CIFAR-10 from {tree} once")
    load_cifar10(tree, cache_dir=tmp_path / "cache", announce=said.append)
    assert len(said) == 1


def test_changed_source_gets_a_new_cache(tmp_path, expected):
    tree = write_tree(tmp_path / "src", expected, ".png")
    cache_dir = tmp_path / "cache"
    load_cifar10(tree, cache_dir=cache_dir)
    changed = tree / "test" / "cat" / "0000.png"
    Image.new("RGB", (32, 32), (1, 2, 3)).save(changed)
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    [old] = cache_dir.glob("cifar10-*.pt")
    said: list[str] = []
    reloaded = load_cifar10(tree, cache_dir=cache_dir, announce=said.append)
    # The rebuild says why, and the old cache (185 MB for CIFAR-10) does not stay beside it.
    assert said == [
        f"decoding CIFAR-10 from {tree} again: its files changed since the cache {old.name}; "
        f"replacing it in {cache_dir}"
    ]
    [new] = cache_dir.glob("cifar10-*.pt")
    assert new != old
    cat = CLASSES.index("cat") * PER_CLASS["test"]
    assert reloaded.test_images[cat].flatten(1).tolist() == [[1] * 1024, [2] * 1024, [3] * 1024]


# --------------------------------------------------------------------------- finding the data


def test_data_found_via_env_and_default_dirs(tmp_path, expected, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CIFAR10_ROOT", raising=False)
    batches = write_batches(tmp_path / "studies" / "data" / "cifar-10-batches-py", expected)
    assert resolve_source(None) == batches
    tree = write_tree(tmp_path / "elsewhere", expected, ".png")
    monkeypatch.setenv("CIFAR10_ROOT", str(tree))
    assert resolve_source(None) == tree
    assert_equal_arrays(load_cifar10(), expected)


def test_folder_holding_one_cifar_archive(tmp_path, expected):
    tree = write_tree(tmp_path / "src", expected, ".png")
    archive = make_tar(tmp_path / "shared" / "cifar10-png.tar.gz", tree, "cifar10")
    assert resolve_source(archive.parent) == archive


@pytest.fixture
def offline_download(monkeypatch, expected) -> list[str]:
    """torchvision's download, with the batches written where it would write them: the one
    part of the path that needs the internet. Returns the roots it was asked to download into."""
    roots = []

    def download(root: str, train: bool, download: bool) -> None:
        assert download
        roots.append(root)
        write_batches(Path(root) / "cifar-10-batches-py", expected)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", download)
    monkeypatch.delenv("CIFAR10_ROOT", raising=False)
    return roots


def test_download_goes_into_the_folder_data_names(tmp_path, expected, offline_download):
    told = []
    for folder in (tmp_path / "new", tmp_path / "empty"):
        folder.parent.mkdir(exist_ok=True)
        if folder.name == "empty":
            folder.mkdir()
        arrays = load_cifar10(folder, download=True, announce=told.append)
        assert_equal_arrays(arrays, expected)
        assert load_cifar10(folder) is not None  # found there without --download
    assert offline_download == [str(tmp_path / "new"), str(tmp_path / "empty")]
    assert told[0] == f"downloading CIFAR-10 into {tmp_path / 'new'} (170 MB)"


def test_download_without_data_goes_where_later_runs_find_it(
    tmp_path, expected, offline_download, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    assert_equal_arrays(load_cifar10(download=True), expected)
    assert offline_download == ["studies/data"]
    assert_equal_arrays(load_cifar10(), expected)


def test_download_into_a_missing_archive_path_is_refused(tmp_path, offline_download):
    with pytest.raises(DataError) as info:
        load_cifar10(tmp_path / "cifar.tar.gz", download=True)
    assert_one_line_error(info.value, "cifar.tar.gz", "does not exist")
    assert offline_download == []


# --------------------------------------------------------------------------- errors


def test_missing_path(tmp_path):
    with pytest.raises(DataError) as info:
        load_cifar10(tmp_path / "nope")
    assert_one_line_error(info.value, "nope", "does not exist", "--data")


def test_empty_dir(tmp_path):
    with pytest.raises(DataError) as info:
        load_cifar10(tmp_path)
    assert_one_line_error(info.value, "holds no CIFAR-10", "cifar-10-batches-py", "train/<class>/")


def test_wrong_class_folders(tmp_path, expected):
    tree = write_tree(tmp_path / "src", expected, ".png")
    (tree / "train" / "cat").rename(tree / "train" / "kitten")
    with pytest.raises(DataError) as info:
        load_cifar10(tree)
    assert_one_line_error(info.value, "kitten", "class folders", "airplane")


def test_image_not_32x32(tmp_path, expected):
    tree = write_tree(tmp_path / "src", expected, ".png")
    Image.new("RGB", (64, 48)).save(tree / "test" / "dog" / "0000.png")
    with pytest.raises(DataError) as info:
        load_cifar10(tree)
    assert_one_line_error(info.value, "0000.png", "64x48", "32x32")


def test_undecodable_image(tmp_path, expected):
    tree = write_tree(tmp_path / "src", expected, ".png")
    (tree / "train" / "frog" / "0001.png").write_bytes(b"not a png")
    with pytest.raises(DataError) as info:
        load_cifar10(tree)
    assert_one_line_error(info.value, "0001.png", "cannot decode", "not an image file")
    assert "object at 0x" not in str(info.value)  # PIL's repr of its in-memory buffer


@pytest.mark.parametrize("name", ["broken.tar.gz", "broken.tar"])
def test_corrupt_archive(tmp_path, name):
    archive = tmp_path / name
    archive.write_bytes(np.random.default_rng(1).bytes(5000))
    with pytest.raises(DataError) as info:
        load_cifar10(archive)
    assert_one_line_error(info.value, "cannot read archive", name)


def test_truncated_archive(tmp_path, expected):
    tree = write_tree(tmp_path / "src", expected, ".png")
    archive = make_tar(tmp_path / "cifar.tar.gz", tree, "cifar10")
    archive.write_bytes(archive.read_bytes()[:3000])
    with pytest.raises(DataError) as info:
        load_cifar10(archive)
    assert_one_line_error(info.value, "cannot read archive")


def test_archive_without_cifar(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "notes.txt").write_text("hello")
    archive = make_tar(tmp_path / "other.tar.gz", tmp_path / "src", "x")
    with pytest.raises(DataError) as info:
        load_cifar10(archive)
    assert_one_line_error(info.value, "holds no CIFAR-10")


def test_plain_file_is_not_an_archive(tmp_path):
    path = tmp_path / "cifar.zip"
    path.write_bytes(b"PK")
    with pytest.raises(DataError) as info:
        load_cifar10(path)
    assert_one_line_error(info.value, "not a .tar/.tar.gz/.tgz archive")


def test_corrupt_batch(tmp_path, expected):
    batches = write_batches(tmp_path / "cifar-10-batches-py", expected)
    (batches / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(DataError) as info:
        load_cifar10(batches)
    assert_one_line_error(info.value, "data_batch_3", "not a CIFAR-10 batch")


def test_nothing_found(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CIFAR10_ROOT", raising=False)
    (tmp_path / "data").mkdir()  # present but empty: still nothing found
    with pytest.raises(DataError) as info:
        load_cifar10()
    assert_one_line_error(
        info.value, "no CIFAR-10 data found", "--data PATH", "CIFAR10_ROOT", "--download"
    )


def test_bad_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR10_ROOT", str(tmp_path / "gone"))
    with pytest.raises(DataError) as info:
        resolve_source(None)
    assert_one_line_error(info.value, "CIFAR10_ROOT=", "gone", "does not exist")


# --------------------------------------------------------------------------- stratified_split


def test_stratified_split_partitions_evenly():
    labels = torch.arange(10).repeat_interleave(100)[torch.randperm(1000)]
    train_idx, val_idx = stratified_split(labels, val_size=95, seed=3)
    assert len(val_idx) == 95 and len(train_idx) == 905
    assert train_idx.dtype == val_idx.dtype == torch.int64
    combined = torch.cat([train_idx, val_idx])
    assert torch.equal(combined.sort().values, torch.arange(1000))  # disjoint and complete
    per_class = torch.bincount(labels[val_idx], minlength=10)
    assert per_class.max() - per_class.min() <= 1


def test_stratified_split_caps_small_classes():
    labels = torch.tensor([0] * 2 + [1] * 50 + [2] * 50)
    _, val_idx = stratified_split(labels, val_size=30, seed=0)
    assert torch.bincount(labels[val_idx]).tolist() == [2, 14, 14]


def test_stratified_split_is_deterministic_per_seed():
    labels = torch.arange(10).repeat(50)
    first = stratified_split(labels, 50, seed=7)
    again = stratified_split(labels, 50, seed=7)
    other = stratified_split(labels, 50, seed=8)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[1], other[1])


def test_stratified_split_edges():
    labels = torch.arange(10).repeat(3)
    train_idx, val_idx = stratified_split(labels, 0, seed=0)
    assert len(val_idx) == 0 and torch.equal(train_idx, torch.arange(30))
    train_idx, val_idx = stratified_split(labels, 29, seed=0)
    assert len(train_idx) == 1 and len(val_idx) == 29


@pytest.mark.parametrize("val_size", [-1, 30, 31])
def test_stratified_split_rejects_bad_sizes(val_size):
    with pytest.raises(ValueError, match="val_size"):
        stratified_split(torch.arange(10).repeat(3), val_size, seed=0)


# --------------------------------------------------------------------------- the real data


@pytest.mark.slow
def test_real_archive(tmp_path):
    if not REAL_ARCHIVE.is_file():
        pytest.skip(f"shared CIFAR-10 archive not found at {REAL_ARCHIVE}")
    first, _ = load_twice(REAL_ARCHIVE, tmp_path)
    assert first.train_images.shape == (50000, 3, 32, 32)
    assert first.test_images.shape == (10000, 3, 32, 32)
    assert torch.bincount(first.train_labels).tolist() == [5000] * 10
    assert torch.bincount(first.test_labels).tolist() == [1000] * 10
