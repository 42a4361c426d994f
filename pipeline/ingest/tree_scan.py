"""The local tree ingest uploads, walked by the one walk every program uses
(``pipeline.data.tree``), listing folders with ``os.scandir`` and never following a link."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from pipeline.data import rules
from pipeline.data.tree import Entry, TreeError, TreeListing, walk


def _local_lister(real_root: Path):
    def list_folder(folder: str) -> list[Entry]:
        entries = []
        for item in os.scandir(folder):
            if item.is_symlink():
                problem = rules.link_reason(Path(item.path), real_root)
                entries.append(Entry(item.name, item.path, problem=problem))
            elif item.is_dir(follow_symlinks=False):
                entries.append(Entry(item.name, item.path, is_dir=True))
            elif item.is_file(follow_symlinks=False):
                size = item.stat(follow_symlinks=False).st_size
                entries.append(Entry(item.name, item.path, size=size))
            else:
                entries.append(Entry(item.name, item.path, problem=rules.NOT_REGULAR))
        return entries
    return list_folder


def scan_tree(root: Path, splits: Sequence[str] | None = None) -> TreeListing:
    """Walk the local ``root``: the given splits (each must exist), else all present ones.
    A split folder that is present but not asked for gets a warning."""
    if not root.is_dir():
        raise TreeError(f"local tree {root} does not exist or is not a directory")
    listing = walk(str(root), _local_lister(root.resolve()), splits)
    listing.warnings[:0] = [f"{name}/: split not requested, not ingested"
                            for name in sorted(listing.present - set(listing.splits))]
    return listing
