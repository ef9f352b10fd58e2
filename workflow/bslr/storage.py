"""Atomic file outputs and the per-run Parquet format (columns plus key-value provenance metadata)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bslr.config import RunSpec
from bslr.errors import ConfigError, RunFileError

# One row per evaluation: `epoch` is the epoch the evaluation falls in (an evaluation at its end, by default),
# `step` the SGD steps done, `samples_seen` = step x batch size, `seconds` the wall time since the previous
# row (training, evaluation and measures; the metadata split it up).
RUN_COLUMNS = [
    "epoch",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "lr",
    "batch_size",
    "seconds",
    "step",
    "samples_seen",
]

EPOCH_ONLY_COLUMNS = 8  # the first columns, all that files written before budgets have (`read_run` adds the rest)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    A killed or failing writer leaves at most a hidden temporary file, never a truncated final one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def write_table(frame: pd.DataFrame, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write a DataFrame as Parquet atomically, with string key-value metadata."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary)


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as temporary:
        frame.to_csv(temporary, index=False, float_format="%.10g")


def write_text(text: str, path: str | Path) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def read_run(path: str | Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read a per-run Parquet and its metadata; refuse anything bslr did not write whole."""
    regenerate = f"delete {path} and re-run snakemake to train that run again"
    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises several kinds for truncated or foreign files
        raise RunFileError(f"per-run file {path} is unreadable ({error}); {regenerate}") from error
    metadata = {key.decode(): value.decode() for key, value in (table.schema.metadata or {}).items()}
    missing = [column for column in RUN_COLUMNS[:EPOCH_ONLY_COLUMNS] if column not in table.column_names]
    if missing or "settings" not in metadata:
        what = f"columns {missing}" if missing else "the 'settings' metadata"
        raise RunFileError(f"per-run file {path} lacks {what}, so bslr did not write it; {regenerate}")
    frame = table.to_pandas()
    if "step" not in frame:  # written before budgets: one row per epoch, every epoch whole
        run = run_spec_of(metadata, path)
        steps_per_epoch = run.dataset_entry.train_size // run.batch_size
        frame["step"] = frame["epoch"] * steps_per_epoch
        frame["samples_seen"] = frame["step"] * run.batch_size
    return frame, metadata


def run_spec_of(metadata: dict[str, str], path: str | Path) -> RunSpec:
    """The run a per-run file's metadata says it holds."""
    try:
        return RunSpec.of(json.loads(metadata["settings"]))
    except (ConfigError, json.JSONDecodeError) as error:
        raise RunFileError(
            f"per-run file {path} has settings this bslr cannot read ({error}); delete it and re-run snakemake "
            "to train that run again"
        ) from error
