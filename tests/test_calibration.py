"""Calibration images for int8 models: read without torch, preprocessed as evaluation does, refused in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from compofa.sources import calibration
from compofa.sources.calibration import CalibrationError, calibration_set, eval_preprocess


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from compofa.supernet.train.data import write_digits

    root = tmp_path_factory.mktemp("digits")
    write_digits(root, size=32)
    return root


def _photo(path: Path, width: int, height: int, seed: int = 0) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_the_constants_are_the_evaluation_transforms() -> None:
    from compofa.supernet.train import data

    assert (calibration.IMAGENET_MEAN, calibration.IMAGENET_STD, calibration.CENTRE_CROP, calibration.IMAGE_SUFFIXES) \
        == (data.IMAGENET_MEAN, data.IMAGENET_STD, data.CENTRE_CROP, data.IMAGE_SUFFIXES)


@pytest.mark.parametrize(("width", "height", "resolution"), [
    (32, 32, 160),     # a digit, scaled up
    (300, 200, 160),   # landscape, scaled down (Pillow's filter then spans several pixels)
    (181, 250, 224),   # portrait, odd sides: the longer side truncated, the crop offset rounded
    (183, 183, 160),   # already the resize's size: no resampling at all
])
def test_numpy_preprocessing_equals_torchvisions(tmp_path: Path, width: int, height: int, resolution: int) -> None:
    from compofa.supernet.train.data import eval_transform, load_image

    path = _photo(tmp_path / "photo.png", width, height)
    expected = eval_transform(resolution)(load_image(str(path))).numpy()
    with Image.open(path) as image:
        got = eval_preprocess(image.convert("RGB"), resolution)
    assert got.shape == (3, resolution, resolution) and got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)


def test_a_seeded_bounded_subset_of_the_training_images(digits: Path) -> None:
    chosen = calibration_set(digits, images=32, seed=0)
    assert chosen.root == digits / "train" and len(chosen.files) == 32 and chosen.smallest_side == 32
    assert all(path.is_relative_to(digits / "train") for path in chosen.files)  # never the validation images
    assert len({path.parent.name for path in chosen.files}) > 5  # drawn over the classes, not the first folder
    again = calibration_set(digits, images=32, seed=0)
    assert again == chosen
    assert calibration_set(digits, images=32, seed=1).digest != chosen.digest
    assert calibration_set(digits / "train", images=32, seed=0) == chosen  # the split itself names the same set
    everything = calibration_set(digits, images=100_000)
    assert len(everything.files) == sum(1 for _ in (digits / "train").rglob("*.png"))
    arrays = chosen.arrays(160)
    assert arrays.shape == (32, 3, 160, 160) and arrays.dtype == np.float32
    with Image.open(chosen.files[3]) as image:
        np.testing.assert_array_equal(arrays[3], eval_preprocess(image.convert("RGB"), 160))


def test_a_flat_folder_and_a_changed_image(tmp_path: Path) -> None:
    for index in range(5):
        _photo(tmp_path / f"{index}.jpg", 64, 48, seed=index)
    first = calibration_set(tmp_path, images=3)
    assert len(first.files) == 3 and first.smallest_side == 48
    _photo(first.files[0], 64, 48, seed=99)
    assert calibration_set(tmp_path, images=3).digest != first.digest  # the bytes name the set, not the names


def test_refusals_are_one_line_and_name_the_problem(tmp_path: Path, digits: Path) -> None:
    with pytest.raises(CalibrationError, match="does not exist") as missing:
        calibration_set(tmp_path / "nowhere")
    assert missing.value.option == ("calibration",)
    (tmp_path / "empty" / "cats").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(CalibrationError, match="holds no images"):
        calibration_set(tmp_path / "empty")
    broken = tmp_path / "broken"
    broken.mkdir()
    _photo(broken / "good.png", 64, 64)
    (broken / "bad.png").write_bytes(b"not a png")
    with pytest.raises(CalibrationError, match="cannot read calibration image .*bad.png"):
        calibration_set(broken)
    small = tmp_path / "small"
    small.mkdir()
    _photo(small / "big.png", 64, 64)
    _photo(small / "tiny.png", 20, 24)
    images = calibration_set(small)
    images.check_resolution(160)  # 20 px scaled 8x covers 160
    with pytest.raises(CalibrationError, match=r"tiny.png' is 20 px .* too small for 224 px inputs .* at least 28 px"):
        images.check_resolution(224)
    with pytest.raises(CalibrationError, match="too small"):
        images.arrays(224)
    calibration_set(digits, images=4).check_resolution(256)  # the digits (32 px) calibrate up to 256 px
    for error in (missing.value,):
        assert "\n" not in str(error)
