"""Calibration images for int8 models: real images from a folder, read and preprocessed without torch.

Static quantization learns each activation's range from real inputs, so an
int8 model is calibrated on images, not on the seeded noise latency is timed
on. A calibration folder is an ImageFolder (``DIR/train/<class>/<image>``, as
``compofa digits -o DIR`` writes it; or ``DIR/<class>/<image>``) or a flat
folder of images. A seeded subset of a bounded size is drawn from it
(`DEFAULT_IMAGES`), and each image goes through compofa's evaluation transform
(`compofa.supernet.train.data.eval_transform`: resize the shorter side to
R / 0.875 with Pillow's bilinear filter, centre crop R x R, scale to [0, 1],
normalise with ImageNet's statistics), written here in numpy so that
calibrating needs neither torch nor torchvision; a test checks the two agree.

The set is named by a digest of the chosen files' names and bytes: an int8
model's cache key and a device's fingerprint record it, so a changed folder
can never serve a stale model. Pillow is imported when images are read
(``pip install 'compofa[int8]'``).

An image is refused when its shorter side, scaled up more than `MAX_UPSCALE`
times, would have to fill the network's input: what the network then sees is
mostly interpolation, and ranges calibrated on it say little about real
inputs. The digits compofa writes (32 px) calibrate up to 256 px inputs.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from compofa.errors import CompofaError
from compofa.graphs.quantize import QdqRecipe

#: Images a calibration set holds unless told otherwise: ONNX Runtime's and NNCF's examples calibrate on a few
#: hundred (NNCF's default subset is 300); min-max ranges settle well before that on one image domain.
DEFAULT_IMAGES = 256
#: An image may be scaled up at most this many times to fill the input (see the module docstring).
MAX_UPSCALE = 8
#: The evaluation transform's constants (`compofa.supernet.train.data`, which imports torch; a test keeps
#: these equal): ImageNet's channel statistics, and the share of the resized image the centre crop keeps.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CENTRE_CROP = 0.875
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
INSTALL = "pip install 'compofa[int8]'"


class CalibrationError(CompofaError):
    """A calibration folder that cannot calibrate: missing, empty, unreadable, or images too small."""


class CalibratedRecipe(QdqRecipe, Protocol):
    """A quantization recipe with the images it is calibrated on (`compofa.devices.Quantization` is one)."""

    @property
    def calibration(self) -> str:
        """The calibration folder, as given."""
        ...

    @property
    def images(self) -> int: ...

    @property
    def seed(self) -> int: ...

    @property
    def digest(self) -> str:
        """`CalibrationSet.digest` of the images drawn."""
        ...


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise CalibrationError(f"reading calibration images needs Pillow: {INSTALL}") from None
    return Image


@dataclass(frozen=True)
class CalibrationSet:
    """The images an int8 model is calibrated on.

    Attributes:
        root: the folder the images were listed from (``DIR/train`` where the folder has one).
        files: the chosen images, sorted by their path under `root`.
        digest: names the set (each chosen image's path under `root` and its bytes).
        smallest_side: the shortest side among the chosen images, in pixels.
    """

    root: Path
    files: tuple[Path, ...]
    digest: str
    smallest_side: int

    def check_resolution(self, resolution: int) -> None:
        """Refuse inputs of `resolution` px if the smallest image would be scaled up more than `MAX_UPSCALE` x."""
        needed = -(-resolution // MAX_UPSCALE)
        if self.smallest_side < needed:
            small = min(self.files, key=lambda path: _shorter_side(path))
            raise CalibrationError(
                f"calibration image {str(small)!r} is {self.smallest_side} px on its shorter side: too small for "
                f"{resolution} px inputs (scaled up more than {MAX_UPSCALE}x it is mostly interpolation); use "
                f"images of at least {needed} px", option="calibration")

    def arrays(self, resolution: int) -> np.ndarray:
        """Every image through the evaluation transform at `resolution`: float32, N x 3 x R x R."""
        self.check_resolution(resolution)
        image_module = _pillow()
        out = np.empty((len(self.files), 3, resolution, resolution), dtype=np.float32)
        for index, path in enumerate(self.files):
            with image_module.open(path) as image:
                out[index] = eval_preprocess(image.convert("RGB"), resolution)
        return out

    def describe(self) -> dict[str, Any]:
        """What a run or a fingerprint records of the set."""
        return {"images": len(self.files), "digest": self.digest}


def eval_preprocess(image: Any, resolution: int) -> np.ndarray:
    """An RGB Pillow image as the evaluation transform gives it at `resolution`: float32, 3 x R x R.

    torchvision's ``Resize(int(round(R / 0.875)))`` scales the shorter side to that size (the longer side
    truncated to an integer) with Pillow's bilinear filter, then ``CenterCrop(R)`` keeps the middle (offsets
    rounded), ``ToTensor`` divides by 255 and ``Normalize`` subtracts and divides in float32.
    """
    image_module = _pillow()
    size = int(round(resolution / CENTRE_CROP))
    width, height = image.size
    if width <= height:
        new_width, new_height = size, int(size * height / width)
    else:
        new_width, new_height = int(size * width / height), size
    if (new_width, new_height) != (width, height):
        image = image.resize((new_width, new_height), image_module.Resampling.BILINEAR)
    top = int(round((new_height - resolution) / 2.0))
    left = int(round((new_width - resolution) / 2.0))
    image = image.crop((left, top, left + resolution, top + resolution))
    scaled = np.asarray(image, dtype=np.uint8).astype(np.float32) / np.float32(255)
    normalised = (scaled - np.asarray(IMAGENET_MEAN, dtype=np.float32)) / np.asarray(IMAGENET_STD, dtype=np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1), dtype=np.float32)


def calibration_set(folder: str | os.PathLike[str], images: int = DEFAULT_IMAGES, seed: int = 0) -> CalibrationSet:
    """A seeded subset of at most `images` images of `folder` (see the module docstring), each read once to
    check that it decodes; one-line errors name what is wrong."""
    if images < 1:
        raise CalibrationError(f"a calibration set needs at least one image, got {images}", option="calibration_images")
    given = Path(folder)
    if not given.is_dir():
        raise CalibrationError(f"calibration folder {str(given)!r} does not exist (give a folder of images, or an "
                               "ImageFolder dataset such as `compofa digits` writes)", option="calibration")
    root = given / "train" if (given / "train").is_dir() else given
    found = _list_images(root)
    if not found:
        raise CalibrationError(f"calibration folder {str(root)!r} holds no images ({', '.join(IMAGE_SUFFIXES[:3])}, "
                               "...) directly or in class folders", option="calibration")
    order = np.random.default_rng(seed).permutation(len(found))[:images]
    chosen = tuple(sorted((found[i] for i in order), key=lambda path: path.relative_to(root).as_posix()))
    digest = hashlib.sha256()
    smallest = None
    image_module = _pillow()
    for path in chosen:
        try:
            data = path.read_bytes()
            with image_module.open(path) as image:
                image.load()  # decodes, so a damaged file is named now, not in the middle of a run
                side = min(image.size)
        except (OSError, ValueError, SyntaxError) as error:  # PIL's UnidentifiedImageError is an OSError
            raise CalibrationError(f"cannot read calibration image {str(path)!r} ({error}); remove or replace it",
                                   option="calibration") from None
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + hashlib.sha256(data).digest())
        smallest = side if smallest is None else min(smallest, side)
    assert smallest is not None, "a calibration set holds at least one image"
    return CalibrationSet(root, chosen, digest.hexdigest()[:16], smallest)


def _list_images(root: Path) -> list[Path]:
    """The images directly in `root` and in its subfolders (one level: class folders), in a stable order."""
    found = []
    try:
        for entry in sorted(root.iterdir()):
            if entry.is_dir():
                found += sorted(f for f in entry.iterdir() if _is_image(f))
            elif _is_image(entry):
                found.append(entry)
    except OSError as error:
        raise CalibrationError(f"cannot list calibration folder {str(root)!r}: {error.strerror}",
                               option="calibration") from None
    return found


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _shorter_side(path: Path) -> int:
    with _pillow().open(path) as image:
        return int(min(image.size))
