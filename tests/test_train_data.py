"""Training data: the digits dataset, the folder checks, and the transforms."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from compofa.supernet.train.data import (
    DatasetError,
    check_dataset,
    eval_transform,
    image_folder,
    train_transform,
    write_digits,
)


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("digits")
    write_digits(root, size=32)
    return root


def test_digits_become_an_image_folder(digits: Path, tmp_path: Path) -> None:
    info = check_dataset(digits)
    assert info.classes == tuple(str(c) for c in range(10))
    assert info.train_images + info.val_images == 1797 and 340 <= info.val_images <= 380
    train = image_folder(digits, "train", train_transform(128))
    image, label = train[0]
    assert image.shape == (3, 128, 128) and label == 0 and image.dtype == torch.float32
    val = image_folder(digits, "val", eval_transform(128))
    assert len(val) == info.val_images and val[0][0].shape == (3, 128, 128)
    again = write_digits(tmp_path / "again", size=32)  # seeded: the same split every time
    assert sorted(p.name for p in (tmp_path / "again" / "val" / "3").iterdir()) == sorted(
        p.name for p in (digits / "val" / "3").iterdir()) and again.val_images == info.val_images


def test_bad_dataset_folders_say_what_is_wrong(digits: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        check_dataset(tmp_path / "nope")
    (tmp_path / "a" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match="has no val/ folder"):
        check_dataset(tmp_path / "a")
    (tmp_path / "a" / "val").mkdir()
    with pytest.raises(DatasetError, match="has no class folders"):
        check_dataset(tmp_path / "a")
    for split in ("train", "val"):
        (tmp_path / "a" / split / "cat").mkdir()
    with pytest.raises(DatasetError, match="cat hold no images"):
        check_dataset(tmp_path / "a")
    sample = next((digits / "val" / "1").iterdir()).read_bytes()
    for split in ("train", "val"):
        (tmp_path / "a" / split / "cat" / "x.png").write_bytes(sample)
    assert check_dataset(tmp_path / "a").classes == ("cat",)
    (tmp_path / "a" / "train" / "dog").mkdir()
    (tmp_path / "a" / "train" / "dog" / "x.png").write_bytes(sample)
    with pytest.raises(DatasetError, match="different classes .e.g. 'dog'"):
        check_dataset(tmp_path / "a")
