"""Walk a local ``chest_xray/<split>/<class>/`` tree and sort its entries into candidates and
rejects, without reading any file.

Everything that will not be ingested is returned as a Reject with its reason: a user must be
able to see why an image is missing from HDFS. Problems with the tree as a whole (no such
folder, a requested split absent) raise TreeError, because ingesting part of what was asked
for would be worse than stopping.
"""
from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import CLASSES, IMAGE_EXTENSIONS, SPLITS


class TreeError(ValueError):
    """The local tree cannot be ingested at all; the message is one line for the user."""


@dataclass(frozen=True)
class LocalFile:
    """A file that passed the structural checks; its bytes are checked later."""

    #: POSIX path relative to the tree's root, e.g. "train/NORMAL/IM-0115-0001.jpeg"; it is
    #: also the file's path under the HDFS destination.
    rel_path: str
    abs_path: Path
    split: str
    class_name: str
    size: int


@dataclass(frozen=True)
class Reject:
    """An entry that is not ingested, and why."""

    rel_path: str
    reason: str


@dataclass
class Scan:
    """The outcome of a walk: what to ingest, what not and why, and what looks odd."""

    splits: tuple[str, ...]
    files: list[LocalFile] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def scan_tree(root: Path, splits: Sequence[str] | None = None) -> Scan:
    """Walk ``root``; ingest the given splits (each must exist) or else all present ones."""
    if not root.is_dir():
        raise TreeError(f"local tree {root} does not exist or is not a directory")
    walker = _Walker(root)
    top, top_rejects = walker.list(root)
    present = {name for name, path in top if name in SPLITS and path.is_dir()}
    if splits:
        unknown = [s for s in splits if s not in SPLITS]
        if unknown:
            raise TreeError(f"unknown split(s) {', '.join(unknown)}: expected {', '.join(SPLITS)}")
        missing = [s for s in splits if s not in present]
        if missing:
            raise TreeError(f"missing split folder(s) in {root}: {', '.join(missing)}")
    elif not present:
        raise TreeError(f"no split folder ({', '.join(SPLITS)}) in {root}")
    wanted = tuple(s for s in SPLITS if s in (splits or present))
    scan = Scan(splits=wanted, rejects=top_rejects)
    for name, path in top:
        if name in wanted and name in present:
            walker.split(scan, name, path)
        elif name in present:
            scan.warnings.append(f"{name}/: split not requested, not ingested")
        else:
            scan.rejects.append(Reject(name, "not a split folder (expected one of "
                                             f"{', '.join(SPLITS)})"))
    return scan


def link_problem(path: Path, real_root: Path) -> str | None:
    """Why a symbolic link at ``path`` cannot be used; None for a link to an existing file
    inside ``real_root`` (resolved), or for anything that is not a link."""
    if not path.is_symlink():
        return None
    target = Path(os.path.realpath(path))
    if not target.is_relative_to(real_root):
        return "symbolic link pointing outside the tree (not followed)"
    if not target.exists():
        return "broken symbolic link"
    return None


class _Walker:
    """Lists folders with the checks that apply at every level (hidden, links, names)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.real_root = root.resolve()

    def list(self, folder: Path) -> tuple[list[tuple[str, Path]], list[Reject]]:
        """The usable (name, path) entries of a folder sorted by name, and the rejected ones."""
        usable, rejected = [], []
        try:
            listing = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as err:
            return [], [Reject(self.rel(folder), f"folder cannot be read ({err.strerror})")]
        for entry in listing:
            path = Path(entry.path)
            reason = self._unusable(path, entry.name)
            if reason:
                rejected.append(Reject(self.rel(path), reason))
            else:
                usable.append((entry.name, path))
        return usable, rejected

    def rel(self, path: Path) -> str:
        """``path`` relative to the root, as POSIX text (what the reports and HDFS use)."""
        return path.relative_to(self.root).as_posix()

    def _unusable(self, path: Path, name: str) -> str | None:
        """Why an entry cannot be used whatever folder it is in; None if it can."""
        if name.startswith("."):
            return "hidden file or folder"
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            return "file name is not valid UTF-8"
        if ":" in name:
            return "file name contains ':' (not allowed in HDFS paths)"
        return link_problem(path, self.real_root)

    def split(self, scan: Scan, split: str, folder: Path) -> None:
        """Scan one split folder: its class folders, and nothing else."""
        entries, rejects = self.list(folder)
        scan.rejects.extend(rejects)
        seen = set()
        for name, path in entries:
            if name in CLASSES and path.is_dir():
                seen.add(name)
                self.class_folder(scan, split, name, path)
            elif path.is_dir():
                scan.rejects.append(Reject(self.rel(path), "unknown class folder (expected one "
                                                           f"of {', '.join(CLASSES)})"))
            else:
                scan.rejects.append(Reject(self.rel(path), "file outside a class folder"))
        for name in CLASSES:
            if name not in seen:
                scan.warnings.append(f"{split}/{name}/: class folder missing")

    def class_folder(self, scan: Scan, split: str, class_name: str, folder: Path) -> None:
        """Scan one class folder: regular, non-empty files with an image extension."""
        entries, rejects = self.list(folder)
        scan.rejects.extend(rejects)
        found = 0
        for _, path in entries:
            info = path.stat()
            reason = None
            if stat.S_ISDIR(info.st_mode):
                reason = "folder inside a class folder (not scanned)"
            elif not stat.S_ISREG(info.st_mode):
                reason = "not a regular file"
            elif path.suffix.lower() not in IMAGE_EXTENSIONS:
                reason = f"not an image file name (expected {', '.join(IMAGE_EXTENSIONS)})"
            elif info.st_size == 0:
                reason = "empty file (0 bytes)"
            if reason:
                scan.rejects.append(Reject(self.rel(path), reason))
                continue
            found += 1
            scan.files.append(LocalFile(self.rel(path), path, split, class_name, info.st_size))
        if not found:
            scan.warnings.append(f"{self.rel(folder)}/: no images in class folder")
