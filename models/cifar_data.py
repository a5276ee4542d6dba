"""CIFAR-10 as uint8 tensors, from whatever form the data set arrives in.

Accepted sources: torchvision's pickled ``cifar-10-batches-py`` folder (or the folder holding
it), an image-folder tree ``train/<class>/*.png|jpg`` + ``test/<class>/...`` (or a folder
holding exactly one such tree), and a .tar/.tar.gz/.tgz of either. Images are decoded once and
cached with ``torch.save`` so later loads take a fraction of a second.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import tarfile
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

_SPLITS = ("train", "test")
_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_TEST_BATCH = "test_batch"
_BATCHES = (*_TRAIN_BATCHES, _TEST_BATCH)
_BATCH_DIR = "cifar-10-batches-py"
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")
_SEARCH_DIRS = ("data", "studies/data")
_DOWNLOAD_DIR = "studies/data"  # where later runs find a download without any flag
_SIDE = 32
# Part of the cache key: bump it when decoding changes so stale caches are not reused.
_CACHE_FORMAT = "1"

_ACCEPTED = (
    "torchvision's cifar-10-batches-py folder, an image-folder tree train/<class>/ "
    "test/<class>/, or a .tar/.tar.gz of either"
)
_NOT_FOUND = (
    f"no CIFAR-10 data found: pass --data PATH ({_ACCEPTED}), set CIFAR10_ROOT, or add --download"
)

log = logging.getLogger(__name__)


class DataError(Exception):
    """A data path that is missing, holds no CIFAR-10, or cannot be read.

    str(e) is one line saying what is wrong and what to do.
    """


class _NothingFound(DataError):
    """No data where it was looked for: the case that --download can fix, into `folder` (the
    missing or empty folder named by --data or CIFAR10_ROOT; None where nothing was named)."""

    def __init__(self, message: str, folder: Path | None = None) -> None:
        super().__init__(message)
        self.folder = folder


@dataclass(frozen=True)
class CifarArrays:
    """The whole data set in memory: batch order for pickled data, else class then file name."""

    train_images: torch.Tensor  # uint8 [N, 3, 32, 32], contiguous
    train_labels: torch.Tensor  # int64 [N]
    test_images: torch.Tensor  # uint8 [M, 3, 32, 32], contiguous
    test_labels: torch.Tensor  # int64 [M]


# --------------------------------------------------------------------------- locating the data


def resolve_source(data: str | os.PathLike | None) -> Path:
    """Find the CIFAR-10 source to read and return its absolute path.

    Uses ``data``, else ``$CIFAR10_ROOT``, else the first CIFAR-like thing in ./data or
    ./studies/data. A folder is searched for a cifar-10-batches-py folder, an image-folder
    tree (itself or exactly one sub-folder), or exactly one archive with "cifar" in its name;
    the returned path is that batch folder, tree root or archive.
    """
    if data is not None:
        return _locate(Path(data), "data path ")
    env = os.environ.get("CIFAR10_ROOT")
    if env:
        return _locate(Path(env), "CIFAR10_ROOT=")
    for base in map(Path, _SEARCH_DIRS):
        if base.is_dir():
            try:
                return _locate(base, "data path ")
            except DataError:
                continue
    raise _NothingFound(_NOT_FOUND)


def _locate(path: Path, what: str) -> Path:
    """The source inside path; ``what`` names where path came from, for error messages."""
    path = path.expanduser()
    if not path.exists():
        message = f"{what}{path} does not exist: point --data or CIFAR10_ROOT at {_ACCEPTED}"
        if _is_archive(path):
            raise DataError(message)
        raise _NothingFound(f"{message}, or add --download to download it there", path)
    path = path.resolve()
    if path.is_file():
        if _is_archive(path):
            return path
        raise DataError(
            f"{path} is a file but not a .tar/.tar.gz/.tgz archive: point --data at {_ACCEPTED}"
        )
    for candidate in (path, path / _BATCH_DIR):
        if _has_batches(candidate):
            return candidate
    if _is_tree(path):
        return path
    subdirs = sorted(p for p in path.iterdir() if p.is_dir())
    trees = [p for p in subdirs if _is_tree(p)]
    archives = sorted(
        p for p in path.iterdir() if p.is_file() and _is_archive(p) and "cifar" in p.name.lower()
    )
    found = trees or archives
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(p.name for p in found)
        raise DataError(f"{path} holds several CIFAR-10 candidates ({names}): pass one of them")
    raise _NothingFound(
        f"{path} holds no CIFAR-10: point --data at {_ACCEPTED}, or add --download to download "
        "it there",
        path,
    )


def _is_archive(path: Path) -> bool:
    return path.name.lower().endswith(_ARCHIVE_SUFFIXES)


def _has_batches(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _BATCHES)


def _is_tree(folder: Path) -> bool:
    return all((folder / split).is_dir() for split in _SPLITS)


# --------------------------------------------------------------------------- loading + caching


def load_cifar10(
    data: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = False,
    announce: Callable[[str], None] | None = None,
) -> CifarArrays:
    """Load CIFAR-10 from ``data`` (see resolve_source), decoding once and caching in cache_dir.

    With ``download=True`` and no data found, torchvision downloads the standard folder first:
    into the folder ``data`` (or $CIFAR10_ROOT) names when it is missing or holds no CIFAR-10,
    else into ./studies/data, where later runs find it. ``announce`` is told, in one line, when
    the images are about to be downloaded or decoded: that takes seconds to minutes, cache hits
    do not.
    """
    tell = announce or (lambda text: None)
    try:
        source = resolve_source(data)
    except _NothingFound as nothing:
        if not download:
            raise
        root = nothing.folder or Path(_DOWNLOAD_DIR)
        source = _download(root, tell)
    try:
        return _load(source, None if cache_dir is None else Path(cache_dir), tell)
    except OSError as exc:
        raise DataError(
            f"cannot read {source} ({_one_line(exc)}): check that it is complete and readable"
        ) from exc


def _load(source: Path, cache_dir: Path | None, tell: Callable[[str], None]) -> CifarArrays:
    if cache_dir is None:
        tell(f"decoding CIFAR-10 from {source} (no cache folder: every run decodes it)")
        return _read_source(source)
    # Named by the source, the format and the source's files, so that a rebuild can tell why
    # the cache no longer matches and remove the old one (185 MB for CIFAR-10).
    mine = f"cifar10-{_source_id(source)}-v"
    cache_file = cache_dir / f"{mine}{_CACHE_FORMAT}-{_cache_key(source)}.pt"
    arrays = _load_cache(cache_file)
    if arrays is None:
        stale = sorted(p for p in cache_dir.glob(f"{mine}*.pt") if p != cache_file)
        tell(f"decoding CIFAR-10 from {source} {_why_decode(stale, cache_dir)}")
        arrays = _read_source(source)
        _save_cache(arrays, cache_file)
        for old in stale:
            old.unlink(missing_ok=True)  # another process may have removed it already
    return arrays


def _source_id(source: Path) -> str:
    return hashlib.sha256(str(source).encode()).hexdigest()[:8]


def _why_decode(stale: list[Path], cache_dir: Path) -> str:
    """Why the images are decoded: the first time, or what made the old cache stale."""
    if not stale:
        return f"once; later runs read it from {cache_dir}"
    old_format = stale[0].name.split("-v", 1)[1].split("-", 1)[0]
    why = (
        "its files changed since"
        if old_format == _CACHE_FORMAT
        else "another version of regsearch wrote"
    )
    return f"again: {why} the cache {stale[0].name}; replacing it in {cache_dir}"


def _download(root: Path, tell: Callable[[str], None]) -> Path:
    import torchvision  # deferred: slow to import and only needed here

    tell(f"downloading CIFAR-10 into {root} (170 MB)")
    try:
        torchvision.datasets.CIFAR10(str(root), train=True, download=True)
    except (OSError, RuntimeError) as exc:
        raise DataError(
            f"could not download CIFAR-10 into {root} ({_one_line(exc)}): "
            f"pass --data PATH ({_ACCEPTED}) or set CIFAR10_ROOT"
        ) from exc
    return (root / _BATCH_DIR).resolve()


def _cache_key(source: Path) -> str:
    """Hash of the source path and the size and mtime of each of its files (never contents)."""
    digest = hashlib.sha256(f"{_CACHE_FORMAT}\n{source}\n".encode())
    for rel, path in _source_files(source):
        st = path.stat()
        digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _source_files(source: Path) -> list[tuple[str, Path]]:
    """(relative POSIX name, path) of every file the source is read from, sorted."""
    if source.is_file():
        return [(source.name, source)]
    if _has_batches(source):
        return [(name, source / name) for name in _BATCHES]
    return sorted(_walk_tree(source))


def _walk_tree(root: Path) -> Iterator[tuple[str, Path]]:
    # Only <split>/<class>/<file>: a tree root passed by mistake (e.g. $HOME) is not crawled.
    for split in _SPLITS:
        with os.scandir(root / split) as classes:
            class_dirs = [entry for entry in classes if entry.is_dir()]
        for class_dir in class_dirs:
            with os.scandir(class_dir.path) as files:
                for entry in files:
                    if entry.is_file():
                        yield f"{split}/{class_dir.name}/{entry.name}", Path(entry.path)


def _load_cache(cache_file: Path) -> CifarArrays | None:
    if not cache_file.is_file():
        return None
    try:
        tensors = torch.load(cache_file, weights_only=True)
    # A half-copied or foreign file can fail in many ways; any of them means "rebuild it".
    except Exception as exc:
        problem = f"torch.load cannot read it: {_described(exc)}"
    else:
        try:
            return _arrays_from_dict(tensors)
        except ValueError as exc:
            problem = str(exc)
    log.warning("ignoring unreadable cache %s (%s); rebuilding it", cache_file, problem)
    return None


def _described(exc: BaseException) -> str:
    """An exception in words: a bare KeyError or EOFError prints as '97' or nothing at all."""
    if isinstance(exc, EOFError):
        return "the file ends early"
    first = " ".join(str(exc).split()).split(". ")[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _arrays_from_dict(tensors: object) -> CifarArrays:
    fields = list(CifarArrays.__dataclass_fields__)
    if not isinstance(tensors, dict):
        raise ValueError(f"it holds a {type(tensors).__name__}, not a dict of tensors")
    missing = [name for name in fields if not isinstance(tensors.get(name), torch.Tensor)]
    if missing:
        raise ValueError(f"it holds no {', '.join(missing)} tensor")
    arrays = CifarArrays(**{name: tensors[name] for name in fields})
    for images, labels in (
        (arrays.train_images, arrays.train_labels),
        (arrays.test_images, arrays.test_labels),
    ):
        if images.dtype != torch.uint8 or labels.dtype != torch.int64:
            raise ValueError("wrong dtypes")
        if images.shape[1:] != (3, _SIDE, _SIDE) or labels.shape != images.shape[:1]:
            raise ValueError("wrong shapes")
    return arrays


def _save_cache(arrays: CifarArrays, cache_file: Path) -> None:
    """Write atomically: concurrent loaders see either no cache file or a complete one."""
    tensors = {name: getattr(arrays, name) for name in CifarArrays.__dataclass_fields__}
    # Unique per writer so that two processes building the same cache never share a temp file;
    # plain open() rather than tempfile keeps the umask's permissions (tempfile forces 0600).
    tmp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "xb") as out:
            torch.save(tensors, out)
        os.replace(tmp, cache_file)
    # torch.save reports a full disk as RuntimeError; the data is in memory either way.
    except (OSError, RuntimeError) as exc:
        log.warning("could not write cache %s (%s); continuing without it", cache_file, exc)
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- reading sources


def _read_source(source: Path) -> CifarArrays:
    if source.is_file():
        return _read_archive(source)
    if _has_batches(source):
        return _read_batches(source, lambda name: (source / name).read_bytes())
    files = dict(_walk_tree(source))
    return _read_images(source, _index_images(source, files), lambda rel: files[rel].read_bytes())


def _read_archive(archive: Path) -> CifarArrays:
    blobs = _archive_members(archive)
    batch_dirs = sorted(
        parent
        for parent in {name.rpartition("/")[0] for name in blobs}
        if all(_join(parent, batch) in blobs for batch in _BATCHES)
    )
    if len(batch_dirs) > 1:
        raise DataError(
            f"{archive} holds several CIFAR-10 batch folders ({', '.join(batch_dirs)}): "
            "archive only one of them"
        )
    if batch_dirs:
        return _read_batches(archive, lambda name: blobs[_join(batch_dirs[0], name)])
    return _read_images(archive, _index_images(archive, blobs), blobs.__getitem__)


def _archive_members(archive: Path) -> dict[str, bytes]:
    """Bytes of every member that could be a batch or an image, in one sequential pass.

    One pass matters for .tar.gz: jumping back to a member would re-decompress from the start.
    """
    blobs: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if member.isfile() and _is_wanted(name):
                    blobs[name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise DataError(
            f"cannot read archive {archive} ({_one_line(exc)}): "
            f"re-download it or point --data at {_ACCEPTED}"
        ) from exc
    return blobs


def _is_wanted(name: str) -> bool:
    # String ops, not PurePosixPath: this runs for each of the 60,000 members.
    base = name.rpartition("/")[2]
    return base in _BATCHES or base.lower().endswith(_IMAGE_SUFFIXES)


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def _read_batches(source: Path, read: Callable[[str], bytes]) -> CifarArrays:
    train = [_read_batch(source, name, read) for name in _TRAIN_BATCHES]
    test = _read_batch(source, _TEST_BATCH, read)
    return CifarArrays(
        train_images=torch.cat([images for images, _ in train]),
        train_labels=torch.cat([labels for _, labels in train]),
        test_images=test[0],
        test_labels=test[1],
    )


def _read_batch(
    source: Path, name: str, read: Callable[[str], bytes]
) -> tuple[torch.Tensor, torch.Tensor]:
    blob = read(name)
    try:
        # Same trust model as torchvision: the user's own data files are unpickled.
        batch = pickle.loads(blob, encoding="bytes")
        pixels = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, _SIDE, _SIDE)
        labels = torch.tensor(batch[b"labels"], dtype=torch.int64)
        if len(labels) != len(pixels) or ((labels < 0) | (labels >= len(CLASSES))).any():
            raise ValueError("labels do not match the images")
    # Unpickling a damaged or foreign file can raise nearly anything.
    except Exception as exc:
        raise DataError(
            f"{source}: {name} is not a CIFAR-10 batch ({_one_line(exc)}): "
            "re-download cifar-10-batches-py"
        ) from exc
    return torch.from_numpy(pixels.copy()), labels


def _index_images(source: Path, names: Iterable[str]) -> list[tuple[str, int, str]]:
    """(split, label, name) of every image of a train/<class>/ test/<class>/ tree.

    Sorted by split (train first), class and file name so that every load yields the same order.
    """
    by_prefix: dict[str, list[tuple[str, str, str]]] = {}
    for name in names:
        parts = name.split("/")
        if len(parts) >= 3 and parts[-3] in _SPLITS and name.lower().endswith(_IMAGE_SUFFIXES):
            by_prefix.setdefault("/".join(parts[:-3]), []).append((parts[-3], parts[-2], name))
    if not by_prefix:
        raise DataError(f"{source} holds no CIFAR-10: point --data at {_ACCEPTED}")
    if len(by_prefix) > 1:
        trees = ", ".join(f"{prefix or '.'}/" for prefix in sorted(by_prefix))
        raise DataError(f"{source} holds several image-folder trees ({trees}): pass one of them")
    [(prefix, samples)] = by_prefix.items()
    _check_classes(source, prefix, samples)
    index = [(split, CLASSES.index(cls), name) for split, cls, name in samples]
    return sorted(index, key=lambda item: (_SPLITS.index(item[0]), item[1], item[2]))


def _check_classes(source: Path, prefix: str, samples: list[tuple[str, str, str]]) -> None:
    for split in _SPLITS:
        where = f"{source}/{prefix}/{split}" if prefix else f"{source}/{split}"
        found = {cls for s, cls, _ in samples if s == split}
        if found != set(CLASSES):
            wrong = ", ".join(sorted(found - set(CLASSES)))
            missing = ", ".join(sorted(set(CLASSES) - found))
            problem = f"unexpected: {wrong}" if wrong else f"no images for: {missing}"
            raise DataError(
                f"{where} has the wrong class folders ({problem}): it needs one folder of images "
                f"per CIFAR-10 class: {' '.join(CLASSES)}"
            )


def _read_images(
    source: Path, index: list[tuple[str, int, str]], read: Callable[[str], bytes]
) -> CifarArrays:
    # Serial on purpose: a 2-process pool saved only ~1/3 of ~8 s (2-core Intel Xeon,
    # 2026-11-23), once per cache, at the price of forking a process that has torch loaded.
    pixels = bytearray()
    for _, _, name in index:
        pixels += _decode(source, name, read(name))
    hwc = torch.frombuffer(pixels, dtype=torch.uint8).view(-1, _SIDE, _SIDE, 3)
    chw = hwc.permute(0, 3, 1, 2)
    labels = torch.tensor([label for _, label, _ in index], dtype=torch.int64)
    n_train = sum(split == "train" for split, _, _ in index)
    return CifarArrays(
        train_images=chw[:n_train].contiguous(),
        train_labels=labels[:n_train].clone(),
        test_images=chw[n_train:].contiguous(),
        test_labels=labels[n_train:].clone(),
    )


def _decode(source: Path, name: str, blob: bytes) -> bytes:
    try:
        with Image.open(io.BytesIO(blob)) as image:
            if image.size != (_SIDE, _SIDE):
                width, height = image.size
                raise DataError(
                    f"{source}: {name} is {width}x{height} pixels but CIFAR-10 images are "
                    f"{_SIDE}x{_SIDE}: pass the original CIFAR-10 images"
                )
            # Skipping convert() for images already in RGB saves a copy per image.
            rgb = image if image.mode == "RGB" else image.convert("RGB")
            return rgb.tobytes()
    except UnidentifiedImageError as exc:
        # PIL's own message names the in-memory buffer: "<_io.BytesIO object at 0x...>".
        raise DataError(
            f"{source}: cannot decode {name} (not an image file PIL can identify): "
            "replace or remove the file"
        ) from exc
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{source}: cannot decode {name} ({_one_line(exc)}): replace or remove the file"
        ) from exc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# --------------------------------------------------------------------------- splitting


def stratified_split(
    labels: torch.Tensor, val_size: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train_idx, val_idx) holding out val_size samples, as equal per class as possible.

    Deterministic for a given seed; both index tensors are sorted.
    """
    n = len(labels)
    if not 0 <= val_size < n:
        raise ValueError(
            f"val_size must be between 0 and {n - 1} (the number of labels - 1), got {val_size}"
        )
    generator = torch.Generator().manual_seed(seed)
    classes, counts = torch.unique(labels, return_counts=True)
    quota = _per_class_quota(counts, val_size, generator)
    val_parts = []
    for cls, take in zip(classes.tolist(), quota.tolist(), strict=True):
        members = torch.nonzero(labels == cls).flatten()
        order = torch.randperm(len(members), generator=generator)
        val_parts.append(members[order[:take]])
    val_idx = torch.sort(torch.cat(val_parts)).values
    is_val = torch.zeros(n, dtype=torch.bool)
    is_val[val_idx] = True
    train_idx = torch.nonzero(~is_val).flatten()
    return train_idx, val_idx


def _per_class_quota(
    counts: torch.Tensor, val_size: int, generator: torch.Generator
) -> torch.Tensor:
    """Split val_size over classes evenly, capped by each class's size.

    Leftover units (val_size not divisible, or small classes full) go to randomly chosen classes
    that still have room, so no class is systematically favoured.
    """
    quota = torch.zeros_like(counts)
    remaining = val_size
    while remaining > 0:
        open_classes = torch.nonzero(quota < counts).flatten()
        share = remaining // len(open_classes)
        if share == 0:
            lucky = open_classes[torch.randperm(len(open_classes), generator=generator)[:remaining]]
            quota[lucky] += 1
            break
        added = torch.minimum(quota[open_classes] + share, counts[open_classes])
        remaining -= int((added - quota[open_classes]).sum())
        quota[open_classes] = added
    return quota
