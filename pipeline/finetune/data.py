"""Streaming the decoded films into Keras inside the training task, one row group at a time.

The task never holds the dataset. ``spool`` writes the rows Spark streams into the task to a
local Parquet file, ``CACHE_ROWS_PER_GROUP`` films per row group, as they arrive;
``index_films`` reads the small columns into an index of (row group, rows, labels, paths);
``PixelBatches`` then reads pixels one row group at a time. Each training epoch visits the row
groups in a new random order and shuffles the films of every ``CACHE_SHUFFLE_GROUPS``
consecutive groups together; a small LRU keeps those groups decoded, so each is read once per
epoch. It is a ``keras.utils.PyDataset``: numpy batches, which every Keras backend accepts.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterable

import keras
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import config
from pipeline.finetune.pixel_cache import TASK_COLUMNS, subset_name


@dataclass(frozen=True)
class Unit:
    """The films of one subset inside one Parquet row group."""

    file: str
    group: int
    rows: np.ndarray  # positions inside the row group
    labels: np.ndarray
    paths: tuple[str, ...]


_SPOOL_SCHEMA = pa.schema(list(zip(TASK_COLUMNS, (pa.string(), pa.string(), pa.float64(),
                                                  pa.bool_(), pa.binary()))))


def spool(rows: Iterable, path: str) -> int:
    """Write ``rows`` (Spark Rows of ``TASK_COLUMNS``) to the Parquet file ``path`` as they
    arrive, ``CACHE_ROWS_PER_GROUP`` to a row group; returns how many."""
    count, chunk = 0, []
    with pq.ParquetWriter(path, _SPOOL_SCHEMA) as writer:
        for row in rows:
            chunk.append(row)
            if len(chunk) == config.CACHE_ROWS_PER_GROUP:
                writer.write_table(_table(chunk))
                count, chunk = count + len(chunk), []
        if chunk:
            writer.write_table(_table(chunk))
            count += len(chunk)
    return count


def _table(rows: list) -> pa.Table:
    return pa.table({name: [r[name] for r in rows] for name in TASK_COLUMNS}, schema=_SPOOL_SCHEMA)


def index_films(path: str, subset: str) -> list[Unit]:
    """The row groups of the spooled file ``path`` that hold ``subset``'s films."""
    meta = pq.ParquetFile(path)
    units = []
    for group in range(meta.num_row_groups):
        d = meta.read_row_group(group, columns=["path", "split", "label", "is_val"]).to_pydict()
        keep = [i for i, (split, is_val) in enumerate(zip(d["split"], d["is_val"]))
                if subset_name(split, is_val) == subset]
        if keep:
            units.append(Unit(path, group, np.array(keep), np.array([d["label"][i] for i in keep],
                              dtype=np.float32), tuple(d["path"][i] for i in keep)))
    return units


class PixelBatches(keras.utils.PyDataset):
    """Batches ``(x float32 [n, size, size, 3] in 0..255, y float32 [n])`` of one subset.

    With ``seed`` set, every epoch (``on_epoch_begin``) draws a new order as described above;
    without it the order is fixed (the index order), for validation and scoring. ``jitter``
    (``augment.IntensityJitter``) changes each batch's pixels, for training.
    """

    def __init__(self, units: list[Unit], image_size: int, batch_size: int,
                 seed: int | None = None,
                 jitter: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        super().__init__()
        if not units:
            raise ValueError("no films to stream")
        self.units = units
        self.image_size = image_size
        self.batch_size = batch_size
        self._rng = None if seed is None else np.random.default_rng(seed)
        self._jitter = jitter
        self._groups: OrderedDict[int, np.ndarray] = OrderedDict()
        self._plan_unit = np.concatenate([np.full(len(u.rows), i) for i, u in enumerate(units)])
        self._plan_row = np.concatenate([np.arange(len(u.rows)) for u in units])

    @property
    def size(self) -> int:
        return len(self._plan_unit)

    @property
    def labels(self) -> np.ndarray:
        """Labels in the fixed order (what ``predict`` on an unshuffled stream returns)."""
        return np.concatenate([u.labels for u in self.units])

    @property
    def paths(self) -> list[str]:
        return [p for u in self.units for p in u.paths]

    def class_counts(self) -> dict[int, int]:
        labels = self.labels
        return {0: int((labels == 0).sum()), 1: int((labels == 1).sum())}

    def __len__(self) -> int:
        return -(-self.size // self.batch_size)

    def on_epoch_begin(self) -> None:
        if self._rng is None:
            return
        order = self._rng.permutation(len(self.units))
        window = config.CACHE_SHUFFLE_GROUPS
        units, rows = [], []
        for start in range(0, len(order), window):
            members = order[start:start + window]
            u = np.concatenate([np.full(len(self.units[m].rows), m) for m in members])
            r = np.concatenate([np.arange(len(self.units[m].rows)) for m in members])
            mix = self._rng.permutation(len(u))
            units.append(u[mix])
            rows.append(r[mix])
        self._plan_unit, self._plan_row = np.concatenate(units), np.concatenate(rows)

    def _pixels(self, index: int) -> np.ndarray:
        """``uint8 [rows, size, size, 3]`` of unit ``index``, from the LRU or the file."""
        if index in self._groups:
            self._groups.move_to_end(index)
            return self._groups[index]
        unit = self.units[index]
        column = pq.ParquetFile(unit.file).read_row_group(unit.group, columns=["pixels"]).column(0)
        values = column.take(unit.rows).to_pylist()
        side = self.image_size
        if any(len(v) != side * side * 3 for v in values):
            raise ValueError(f"{unit.file} holds films of another size than {side}x{side}")
        pixels = np.frombuffer(b"".join(values), dtype=np.uint8).reshape(-1, side, side, 3)
        self._groups[index] = pixels
        while len(self._groups) > config.CACHE_SHUFFLE_GROUPS:
            self._groups.popitem(last=False)
        return pixels

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
        units, rows = self._plan_unit[sl], self._plan_row[sl]
        x = np.stack([self._pixels(int(u))[r] for u, r in zip(units, rows)]).astype(np.float32)
        y = np.array([self.units[int(u)].labels[r] for u, r in zip(units, rows)], dtype=np.float32)
        return (self._jitter(x) if self._jitter else x), y
