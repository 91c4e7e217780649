"""Reading images and class folders (one subfolder per class), shared by evaluation and training."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from smartstock.errors import InputError
from smartstock.vision.preprocess import _cv2

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"})
GOOD_LABEL_NAMES = ("ok", "good", "pass", "normal", "no_defect", "nodefect")


def read_image(path: Path) -> np.ndarray:
    """Decode an image file as gray (HxW) or BGR (HxWx3) uint8; a corrupt or empty file is an InputError."""
    cv2 = _cv2()
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read image: {e.strerror}") from None
    if not data:
        raise InputError(f"{path}: empty image file (0 bytes)", hint="re-copy the image or delete it")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise InputError(f"{path}: not a readable image (corrupt or unsupported format)",
                         hint="re-export it as PNG/JPEG or delete it")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    return img


@dataclass
class ImageFolder:
    """A folder with one subfolder per class: class names sorted, files with their class index."""

    root: Path
    labels: list[str]
    files: list[tuple[Path, int]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(self.labels, 0)
        for _, y in self.files:
            out[self.labels[y]] += 1
        return out


def scan_image_folder(root: Path, *, min_classes: int = 2) -> ImageFolder:
    """List class subfolders and their images; fewer than `min_classes` classes is an InputError."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder", hint="pass a folder with one subfolder of images per class")
    classes = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        imgs = sorted(p for p in sub.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if imgs:
            classes.append((sub.name, imgs))
        else:
            logger.warning("%s: no images (%s), folder ignored", sub, ", ".join(sorted(IMAGE_SUFFIXES)))
    if len(classes) < min_classes:
        found = ", ".join(f"{n}/ ({len(i)} images)" for n, i in classes) or "none"
        raise InputError(f"{root}: found {len(classes)} class folder(s) with images ({found}); "
                         f"need at least {min_classes}",
                         hint="put each class in its own subfolder, e.g. ok/ and defect/ (or scratch/, crack/ ...)")
    labels = [n for n, _ in classes]
    files = [(p, i) for i, (_, imgs) in enumerate(classes) for p in imgs]
    return ImageFolder(root, labels, files)


def default_defect_labels(labels: list[str], good_class: str | None = None, *, no_good_class: bool = False) -> list[str]:
    """The defect labels of a class folder: every label except the good one.

    The good folder is `good_class` when given (any name), else the one named ok/good/pass/normal; with
    `no_good_class` every folder is a defect kind (a defect-type classifier). No good folder otherwise
    is an InputError that names both ways out.
    """
    if no_good_class:
        if good_class is not None:
            raise InputError("--good-class and --no-good-class contradict each other", hint="pass one of them")
        return list(labels)
    if good_class is not None:
        if good_class not in labels:
            raise InputError(f"--good-class {good_class!r} is not one of the class folders {labels}",
                             hint="pass the name of the folder that holds the good parts")
        return [label for label in labels if label != good_class]
    good = [label for label in labels if label.lower() in GOOD_LABEL_NAMES]
    if not good:
        raise InputError(f"no class folder for good parts among {labels}",
                         hint=f"name the good-part folder one of: {', '.join(GOOD_LABEL_NAMES)}, pass "
                              "--good-class NAME, or --no-good-class when every folder is a defect kind")
    return [label for label in labels if label not in good]
