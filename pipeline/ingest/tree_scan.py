"""The local tree ingest uploads, walked by the one walk every program uses
(``pipeline.data.tree``), listing folders with ``os.scandir`` (``pipeline.data.local_tree``)
and never following a link."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pipeline.data.local_tree import local_lister
from pipeline.data.tree import TreeError, TreeListing, walk


def scan_tree(root: Path, splits: Sequence[str] | None = None) -> TreeListing:
    """Walk the local ``root``: the given splits (each must exist), else all present ones.
    A split folder that is present but not asked for gets a warning."""
    if not root.is_dir():
        raise TreeError(f"local tree {root} does not exist or is not a directory")
    listing = walk(str(root), local_lister(root.resolve()), splits)
    listing.warnings[:0] = [f"{name}/: split not requested, not ingested"
                            for name in sorted(listing.present - set(listing.splits))]
    return listing
