"""Per-epoch checkpoints that let a killed training job resume and end exactly as an uninterrupted one.

A checkpoint holds the model and optimizer state, the metrics of the epochs done, and every random state
the rest of the run draws from (torch, CUDA, numpy, Python, the data order and augmentation generators).
It carries the hash of the run's settings: a checkpoint of other settings is refused, never reused.
Files are written atomically and read with `torch.load(weights_only=True)`, which unpickles only
tensors and plain containers.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bslr.storage import atomic_path

FORMAT = 3  # 3: the pack's progress in steps, and the measures' state (2: whole epochs; 1: one model)


def settings_hash(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def capture_rng(generators: dict[str, torch.Generator | None]) -> dict[str, Any]:
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian],
        "python": random.getstate(),
        "generators": {name: generator.get_state() for name, generator in generators.items() if generator is not None},
    }


def restore_rng(state: dict[str, Any], generators: dict[str, torch.Generator | None]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    random.setstate(state["python"])
    for name, generator in generators.items():
        if generator is not None:
            generator.set_state(state["generators"][name])


def save(path: str | Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as temporary:
        torch.save({"format": FORMAT, **state}, temporary)


def load(path: str | Path, expected_hash: str) -> dict[str, Any] | None:
    """The checkpoint at `path` if it belongs to these settings; None (with a message) otherwise."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a file cut short by a crash of the machine, or not a checkpoint
        print(f"ignoring unreadable checkpoint {path} ({error}); training from the start", file=sys.stderr)
        return None
    if state.get("format") != FORMAT or state.get("settings_hash") != expected_hash:
        print(
            f"refusing checkpoint {path}: it was written for other settings (or another bslr version); "
            "training from the start and overwriting it",
            file=sys.stderr,
        )
        return None
    return state
