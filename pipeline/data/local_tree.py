"""Listing a local folder for the one walk (``pipeline.data.tree``): ingest's tree, and the
jobs' ``file:`` trees. One ``os.scandir`` per folder; symbolic links are reported, never
followed. No Spark here: ingest runs without it."""
from __future__ import annotations

import os
from pathlib import Path

from pipeline.data import rules
from pipeline.data.tree import Entry, Lister


def local_lister(real_root: Path, prefix: str = "") -> Lister:
    """Lists a local folder with one ``os.scandir``: a symbolic link is reported
    (``rules.link_reason``), never followed; what is neither file nor folder is NOT_REGULAR.
    Paths are ``prefix`` + the local path (``"file:"`` gives Hadoop's form)."""
    def list_folder(folder: str) -> list[Entry]:
        entries = []
        for item in os.scandir(folder.removeprefix(prefix)):
            path = prefix + item.path
            if item.is_symlink():
                problem = rules.link_reason(Path(item.path), real_root)
                entries.append(Entry(item.name, path, problem=problem))
            elif item.is_dir(follow_symlinks=False):
                entries.append(Entry(item.name, path, is_dir=True))
            elif item.is_file(follow_symlinks=False):
                size = item.stat(follow_symlinks=False).st_size
                entries.append(Entry(item.name, path, size=size))
            else:
                entries.append(Entry(item.name, path, problem=rules.NOT_REGULAR))
        return entries
    return list_folder
