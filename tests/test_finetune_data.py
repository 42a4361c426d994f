"""Streaming films from a spooled Parquet file: every film once per epoch, bounded memory."""
from __future__ import annotations

import numpy as np
import pytest
from pyspark.sql import Row

from pipeline import config
from pipeline.finetune.data import PixelBatches, index_films, spool

SIZE = 4


def _rows(n: int):
    """Films whose pixels encode their number, so a batch can be traced back to its rows."""
    for i in range(n):
        split = "test" if i % 10 == 9 else "train"
        yield Row(path=f"f{i:04d}", split=split, label=float(i % 3 == 0), is_val=i % 5 == 0,
                  pixels=np.full((SIZE, SIZE, 3), i % 251, dtype=np.uint8).tobytes())


@pytest.fixture(scope="module")
def films(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("spool") / "films.parquet")
    assert spool(_rows(1000), path) == 1000
    return path


def test_spool_writes_fixed_row_groups(films):
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(films).metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert sizes[:-1] == [config.CACHE_ROWS_PER_GROUP] * (len(sizes) - 1) and sum(sizes) == 1000


def test_subsets_are_disjoint_and_complete(films):
    paths = {s: [p for u in index_films(films, s) for p in u.paths]
             for s in ("train", "validation", "test")}
    expected = {"test": {f"f{i:04d}" for i in range(1000) if i % 10 == 9}}
    expected["validation"] = {f"f{i:04d}" for i in range(1000) if i % 5 == 0 and i % 10 != 9}
    expected["train"] = {f"f{i:04d}" for i in range(1000)} - expected["test"] - expected["validation"]
    assert {s: set(p) for s, p in paths.items()} == expected


def test_training_epochs_see_every_film_once_in_new_orders(films):
    stream = PixelBatches(index_films(films, "train"), SIZE, 32, seed=1)
    orders = []
    for _ in range(2):
        stream.on_epoch_begin()
        seen = []
        for i in range(len(stream)):
            x, y = stream[i]
            assert x.dtype == np.float32 and x.shape[1:] == (SIZE, SIZE, 3) and len(x) == len(y)
            assert len(stream._groups) <= config.CACHE_SHUFFLE_GROUPS  # bounded memory
            seen.extend(int(v) for v in x[:, 0, 0, 0])
        orders.append(seen)
    wanted = sorted(i % 251 for i in range(1000) if i % 10 != 9 and i % 5 != 0)
    assert sorted(orders[0]) == sorted(orders[1]) == wanted
    assert orders[0] != orders[1]


def test_unshuffled_stream_matches_its_labels(films):
    stream = PixelBatches(index_films(films, "validation"), SIZE, 7)
    ys = np.concatenate([stream[i][1] for i in range(len(stream))])
    assert np.array_equal(ys, stream.labels) and len(stream.paths) == stream.size == len(ys)
    assert stream.class_counts() == {0: int((ys == 0).sum()), 1: int((ys == 1).sum())}


def test_wrong_image_size_is_refused(films):
    with pytest.raises(ValueError, match="another size"):
        PixelBatches(index_films(films, "test"), SIZE + 1, 8)[0]
