"""Training data: ImageNet-style folders, the standard augmentation, and a small real dataset for CPU runs.

Data lives in torchvision's `ImageFolder` layout, ``ROOT/train/<class>/<image>``
and ``ROOT/val/<class>/<image>`` (the ImageNet layout). Training images are
cropped and flipped at the largest resolution; the training loop then resizes
each batch to the resolution it draws for that step (the same on every rank),
which is how a batch gets one random resolution without the data loader's
workers having to agree on it.

`write_digits` makes such a folder from scikit-learn's handwritten digits
(1797 real 8x8 scans that ship inside the package): a dataset that needs no
download, for tests and for trying the training commands on a CPU.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from compofa.errors import CompofaError
from compofa.fileio import check_output_folder, write_folder_atomic

#: ImageNet's channel statistics, which the OFA and CompOFA networks are trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The validation crop covers this share of the resized image (224 of 256).
CENTRE_CROP = 0.875
T = TypeVar("T")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class DatasetError(CompofaError):
    """A dataset folder that cannot be used."""


def _torchvision() -> Any:
    try:
        import torchvision
    except ImportError:
        raise DatasetError("training needs torchvision: pip install 'compofa[train]'") from None
    return torchvision


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset folder holds."""

    root: Path
    classes: tuple[str, ...]
    train_images: int
    val_images: int


def check_dataset(root: str | os.PathLike[str]) -> DatasetInfo:
    """Check the ImageFolder layout of `root` without reading an image; one-line errors say what is wrong."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {str(root)!r} does not exist (expected ROOT/train/<class>/... and "
                           "ROOT/val/<class>/...)")
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise DatasetError(
                f"dataset {str(root)!r} has no {split}/ folder; the layout is ROOT/{split}/<class>/<image>")
    counts, classes = {}, {}
    for split in ("train", "val"):
        folder = root / split
        class_dirs = sorted(p for p in folder.iterdir() if p.is_dir())
        if not class_dirs:
            raise DatasetError(f"{str(folder)!r} has no class folders; put each class's images in {split}/<class>/")
        empty = [p.name for p in class_dirs if not any(_is_image(f) for f in p.iterdir())]
        if empty:
            raise DatasetError(f"{str(folder)!r}: class folder(s) {', '.join(empty[:5])} hold no images "
                               f"({', '.join(IMAGE_SUFFIXES[:3])}, ...)")
        classes[split] = tuple(p.name for p in class_dirs)
        counts[split] = sum(1 for p in class_dirs for f in p.iterdir() if _is_image(f))
    if classes["train"] != classes["val"]:
        only = sorted(set(classes["train"]) ^ set(classes["val"]))
        raise DatasetError(f"dataset {str(root)!r}: train/ and val/ have different classes (e.g. {only[0]!r}); "
                           "both need the same class folders")
    return DatasetInfo(root, classes["train"], counts["train"], counts["val"])


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def train_transform(resolution: int) -> Any:
    """OFA's training augmentation: random resized crop (8-100% of the area), flip, mild colour jitter."""
    transforms = _torchvision().transforms
    return transforms.Compose([
        transforms.RandomResizedCrop(resolution, scale=(0.08, 1.0)),
        transforms.RandomHorizontalFlip(),
        transforms.ColorJitter(brightness=32 / 255, saturation=0.5),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def eval_transform(resolution: int) -> Any:
    """Resize to resolution / 0.875, centre crop (the standard ImageNet evaluation)."""
    transforms = _torchvision().transforms
    return transforms.Compose([
        transforms.Resize(int(round(resolution / CENTRE_CROP))),
        transforms.CenterCrop(resolution),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def image_folder(root: str | os.PathLike[str], split: str, transform: Any) -> Any:
    """The `split` ("train" or "val") of a checked dataset folder as a torchvision ImageFolder."""
    return _torchvision().datasets.ImageFolder(str(Path(root) / split), transform=transform, loader=load_image)


def load_image(path: str) -> Any:
    """The image at `path` in RGB; one that cannot be decoded is a one-line error naming it."""
    from PIL import Image

    try:
        with open(path, "rb") as handle:
            return Image.open(handle).convert("RGB")
    except (OSError, ValueError, SyntaxError) as error:  # PIL's UnidentifiedImageError is an OSError
        raise DatasetError(f"cannot read image {path!r} ({error}); remove or replace it and rerun") from None


def batches(loader: Iterable[T]) -> Iterator[T]:
    """The batches of a DataLoader; a `DatasetError` of one of its worker processes arrives as its own one line.

    (A worker's exception is raised again in this process with the worker's traceback as its message.)
    """
    iterator = iter(loader)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except DatasetError as error:
            last = str(error).strip().splitlines()[-1] if str(error).strip() else ""
            raise DatasetError(last.split("DatasetError: ", 1)[-1]) from None
        yield batch


def write_digits(root: str | os.PathLike[str], size: int = 32, val_share: float = 0.2, seed: int = 0) -> DatasetInfo:
    """Write scikit-learn's handwritten digits as an ImageFolder dataset under `root`.

    Each 8x8 scan is scaled to `size` pixels (nearest neighbour, grey as RGB); a
    seeded `val_share` of each class goes to val/. Rewriting gives the same files.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DatasetError("the digits dataset comes with scikit-learn: pip install 'compofa[train]'") from None
    import numpy as np
    from PIL import Image

    if not 0 < val_share < 1:
        raise DatasetError(f"val_share must lie between 0 and 1, got {val_share}")
    root = Path(root)
    check_output_folder(root)
    digits = load_digits()
    rng = np.random.default_rng(seed)
    files = []
    for label in range(10):
        rows = np.flatnonzero(digits.target == label)
        rng.shuffle(rows)
        held_out = max(1, int(round(len(rows) * val_share)))
        for split, chosen in (("val", rows[:held_out]), ("train", rows[held_out:])):
            for row in chosen:
                grey = (digits.images[row] * (255 / 16)).round().astype(np.uint8)
                image = Image.fromarray(grey).resize((size, size), Image.Resampling.NEAREST).convert("RGB")
                encoded = io.BytesIO()
                image.save(encoded, format="PNG")
                files.append((f"{split}/{label}/{row:04d}.png", encoded.getvalue()))
    write_folder_atomic(root, files)  # the whole dataset or, on a full disk, nothing
    return check_dataset(root)
