"""Walking a ``chest_xray/<split>/<CLASS>/`` tree: the one walk behind ingest and every job.

The walk is the same whether the tree is a local folder (ingest) or any Hadoop URI (train,
evaluate, fine-tune); only the folder listing differs, and it is passed in. Every entry ends
as a film candidate or as ``Skipped`` with a reason from ``pipeline.data.rules``; problems
with the tree as a whole (no such split) raise TreeError, because working on part of what was
asked for would be worse than stopping. The bytes of a candidate are judged later
(``rules.open_image``), where they are read anyway.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pipeline import config
from pipeline.data import rules
from pipeline.data.rules import Skipped


class TreeError(ValueError):
    """The tree cannot be used as asked (no such folder, a split missing, nothing in it)."""


@dataclass(frozen=True)
class Entry:
    """One item of a folder listing, as the lister sees it."""

    name: str
    #: The lister's own name for it (a local path, or a qualified Hadoop URI).
    path: str
    is_dir: bool = False
    size: int = 0
    #: A reason the lister already knows it is unusable (a symbolic link, a FIFO, ...).
    problem: str | None = None


#: Lists one folder (the lister's path); an OSError for a folder it cannot read.
Lister = Callable[[str], list[Entry]]


@dataclass(frozen=True)
class Candidate:
    """A file in a class folder that passed every rule about where it sits."""

    path: str
    #: POSIX path below the root, e.g. "train/NORMAL/IM-0115-0001.jpeg" (ingest's HDFS path).
    rel_path: str
    split: str
    class_name: str
    size: int


@dataclass
class TreeListing:
    """What the walk found; ``skipped`` paths and ``warnings`` are relative to the root."""

    splits: tuple[str, ...]
    #: Split folders the root holds, requested or not.
    present: frozenset[str]
    files: list[Candidate] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: With ``walk(..., list_files=False)``: the class folders found, as (folder, split,
    #: relative path), their files neither listed nor judged (the caller lists them, e.g.
    #: with Spark; ``file_problem`` is the rule). ``files`` stays empty.
    class_folders: list[tuple[Entry, str, str]] = field(default_factory=list)


def walk(root: str, list_folder: Lister, splits: Sequence[str] | None = None,
         list_files: bool = True) -> TreeListing:
    """Walk ``root``: the given splits (each must exist), else every split present. With
    ``list_files`` False the class folders are found but not listed (``class_folders``)."""
    top = list_folder(root)
    present = frozenset(e.name for e in top if e.name in config.SPLITS and e.is_dir
                        and not e.problem)
    if splits:
        unknown = [s for s in splits if s not in config.SPLITS]
        if unknown:
            raise TreeError(f"unknown split(s) {', '.join(unknown)}: expected "
                            f"{', '.join(config.SPLITS)}")
        missing = [s for s in splits if s not in present]
        if missing:
            raise TreeError(f"missing split folder(s) in {root}: {', '.join(missing)}")
    elif not present:
        raise TreeError(f"no split folder ({', '.join(config.SPLITS)}) in {root}")
    wanted = tuple(s for s in config.SPLITS if s in (splits or present))
    walker = _Walker(list_folder, TreeListing(wanted, present), list_files)
    for entry in top:
        if entry.name in present:
            if entry.name in wanted:
                walker.split(entry)
        elif entry.name not in rules.OWN_FILES or entry.is_dir:
            walker.skip(entry.name, _problem(entry) or rules.NOT_A_SPLIT)
    return walker.listing


def _problem(entry: Entry) -> str | None:
    return rules.name_problem(entry.name) or entry.problem


def file_problem(entry: Entry) -> str | None:
    """Why an entry of a class folder is not a film to read (None: it is a candidate)."""
    return _problem(entry) or (rules.NESTED_FOLDER if entry.is_dir
                               else rules.file_problem(entry.name, entry.size))


class _Walker:
    def __init__(self, list_folder: Lister, listing: TreeListing, list_files: bool) -> None:
        self.list_folder = list_folder
        self.listing = listing
        self.list_files = list_files

    def skip(self, rel: str, reason: str) -> None:
        self.listing.skipped.append(Skipped(rel, reason))

    def usable(self, folder: Entry, rel: str) -> list[tuple[Entry, str]]:
        """The entries of ``folder`` whose name and kind are usable, with their relative paths;
        the others are skipped."""
        try:
            entries = sorted(self.list_folder(folder.path), key=lambda e: e.name)
        except OSError as err:
            self.skip(rel, f"folder cannot be read ({getattr(err, 'strerror', None) or err})")
            return []
        out = []
        for entry in entries:
            child = f"{rel}/{entry.name}"
            reason = _problem(entry)
            if reason:
                self.skip(child, reason)
            else:
                out.append((entry, child))
        return out

    def split(self, folder: Entry) -> None:
        """One split folder: its class folders, and nothing else."""
        seen = set()
        for entry, rel in self.usable(folder, folder.name):
            if entry.name in config.CLASSES and entry.is_dir:
                seen.add(entry.name)
                if self.list_files:
                    self.class_folder(entry, folder.name, rel)
                else:
                    self.listing.class_folders.append((entry, folder.name, rel))
            elif entry.is_dir:
                self.skip(rel, rules.unknown_class_folder(entry.name))
            else:
                self.skip(rel, rules.OUTSIDE_CLASS_FOLDER)
        for name in config.CLASSES:
            if name not in seen:
                self.listing.warnings.append(f"{folder.name}/{name}/: {rules.CLASS_MISSING}")

    def class_folder(self, folder: Entry, split: str, rel_folder: str) -> None:
        """One class folder: regular, non-empty files with an image suffix."""
        found = 0
        for entry, rel in self.usable(folder, rel_folder):
            reason = file_problem(entry)
            if reason:
                self.skip(rel, reason)
                continue
            found += 1
            self.listing.files.append(Candidate(entry.path, rel, split, folder.name, entry.size))
        if not found:
            self.listing.warnings.append(f"{rel_folder}/: {rules.NO_IMAGES}")
