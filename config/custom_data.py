"""Write a real data set that ships with scikit-learn in the two formats bslr reads: an image folder and an npz.

The data are the UCI "Optical Recognition of Handwritten Digits" test set (Alpaydin & Kaynak 1998) that
scikit-learn bundles as `load_digits`: 1,797 grey 8x8 images of the digits 0-9, pixels 0-16. They are split
once, stratified and seeded, into 1,437 training and 360 test images, and written as

- `resources/data/digits/{train,test}/<digit>/<index>.png` (an image folder, which config/custom.yaml
  trains on: bslr reads it as RGB and resizes it to `image_size`), and
- `resources/data/digits.npz` with `x_train`, `y_train`, `x_test`, `y_test` (uint8 images of shape (N, 1, 8, 8), int64
  labels): the npz form of the same split, for a config of one's own.

Usage, from the repository's root (needs scikit-learn: `pip install scikit-learn`):

    python config/custom_data.py [--output resources/data]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def digits_split(seed: int = 0) -> dict[str, np.ndarray]:
    """The digits as uint8 images (pixels 0-16 scaled to 0-255), split 80/20 by class with `seed`."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.rint(digits.images * (255 / 16)).astype(np.uint8)[:, None]  # (N, 1, 8, 8)
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target.astype(np.int64), test_size=0.2, stratify=digits.target, random_state=seed
    )
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def write_image_folder(arrays: dict[str, np.ndarray], root: Path) -> None:
    for split in ("train", "test"):
        for index, (image, label) in enumerate(zip(arrays[f"x_{split}"], arrays[f"y_{split}"], strict=True)):
            folder = root / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[0]).save(folder / f"{index:04d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="resources/data", help="directory to write digits/ and digits.npz into")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    args = parser.parse_args()
    output = Path(args.output)
    arrays = digits_split(args.seed)
    write_image_folder(arrays, output / "digits")
    np.savez(output / "digits.npz", **arrays)
    print(
        f"wrote {output / 'digits'} and {output / 'digits.npz'}: {len(arrays['x_train'])} training and "
        f"{len(arrays['x_test'])} test images of 10 digits"
    )


if __name__ == "__main__":
    main()
