"""One writer per output: an exclusive lease, a file beside the output, held while a job writes it.

Two jobs writing one output at once would each tidy the other's temporary output away and
the last rename would win, so every job that writes an output first takes its lease
(``pipeline.fs.storage.prepare_output`` and ``atomic_output`` do, for every job). The lease
is the hidden sibling ``.NAME.lease`` (Spark and Hadoop input formats skip it): created
atomically (HDFS's create without overwrite, decided by the NameNode; O_EXCL on a local
disk), holding who writes (Spark application, host, pid, since when, timeout) and refreshed
by a daemon thread that sets its modification time every ``timeout / 4`` seconds. A second
job finds it and stops with LeaseHeld naming the holder. The lease goes when the output is
in place, when the job fails or is stopped (``pipeline.runtime.shutdown.at_end``), or at
interpreter exit.

A job killed outright (SIGKILL, a lost node) leaves its lease behind. When its holder ran on
this machine and its process is gone, the lease is taken over at once (a re-run after a crash
need not wait). Otherwise it is taken over once
it has not been refreshed for the holder's timeout (``XRAY_LEASE_TIMEOUT_S``, recorded in the
file) by the contender's clock, and has then not changed either while the contender watched
for two refresh intervals: a holder whose clock lags ours looks old but is seen refreshing,
so clock skew can only delay a takeover, never steal a live lease. Taking over is race-free
without a conditional delete: the contender renames the stale lease to a name of its own
(only one rename of it can succeed), checks that what it moved is the very lease it watched
(else it puts it back), deletes it, and then competes in the atomic create like anyone.

The residual window: a holder that is alive but stalled for longer than its timeout (a long
GC pause, a network partition from the NameNode) loses its lease to another job. It finds
out at its next refresh or, at the latest, just before it renames its output into place
(``Lease.check``), and fails rather than replace the output; what it cannot prevent is a
stall of that length inside the few milliseconds between that check and its rename. A
holder also cannot tell its lease was moved aside and put back (a race of two contenders
on one stale lease) from one never touched, which is harmless.

Hand-written: Hadoop has no lease for clients' own use (HDFS's file leases only guard one
open file), and a ZooKeeper or YARN-based lock would need a service most laptop and many
cluster installations lack; the file system every job already writes to is enough.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Protocol

from pipeline import config
from pipeline.runtime import shutdown

log = logging.getLogger(__name__)

#: How often the holder refreshes, and how long a contender watches a lease it thinks stale,
#: in units of the timeout.
BEAT_FRACTION = 0.25
WATCH_FRACTION = 0.5
#: The tag of a stale lease moved aside while being taken over (``.NAME.lease.stale-ID``):
#: prepare_output tidies one a contender killed at that moment left.
ASIDE = "lease.stale"
#: Attempts at create-or-take-over before giving up (each lost race means another job got it).
_TRIES = 4


class LeaseFS(Protocol):
    """What a lease needs of a file system (pipeline.fs.storage.HadoopFS)."""

    def qualify(self, uri: str) -> str: ...
    def modified(self, uri: str) -> int | None: ...
    def read_bytes(self, uri: str) -> bytes: ...
    def create_new(self, uri: str, data: bytes) -> bool: ...
    def touch(self, uri: str, modified_ms: int) -> None: ...
    def move_file(self, src: str, dst: str) -> bool: ...
    def delete(self, uri: str) -> None: ...


class LeaseError(OSError):
    """The output's lease is not this job's; the message is one line."""


class LeaseHeld(LeaseError):
    """Another live job holds the lease on the output this job was to write."""


class LeaseLost(LeaseError):
    """This job's lease was taken over (it stalled past its timeout) or removed."""


@dataclass(frozen=True)
class Holder:
    """Who holds a lease: what its file records (no patient data: ids, a host, times)."""

    application: str
    host: str
    pid: int
    #: When the holder took the lease, UTC, ISO 8601.
    since: str
    timeout_s: float
    #: Tells one taking of the lease from another by the same job.
    token: str

    def describe(self) -> str:
        return f"{self.application} on {self.host} (pid {self.pid}) since {self.since}"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Holder | None:
        """None for a file still being written (empty) or not a lease of ours."""
        try:
            return cls(**json.loads(data))
        except (ValueError, TypeError):
            return None


@dataclass(frozen=True)
class Seen:
    """A lease file as a contender saw it: equal twice means it did not change between."""

    holder: Holder | None
    modified_ms: int

    @property
    def timeout_s(self) -> float:
        return self.holder.timeout_s if self.holder else config.LEASE_TIMEOUT_S

    def age_s(self) -> float:
        return time.time() - self.modified_ms / 1000

    def describe(self) -> str:
        return self.holder.describe() if self.holder else "a job whose lease is being written"


def lease_path(fs: LeaseFS, output: str) -> str:
    """``.NAME.lease`` beside ``output``, qualified."""
    qualified = fs.qualify(output).rstrip("/")
    parent, _, name = qualified.rpartition("/")
    return f"{parent}/.{name}.lease"


def _read(fs: LeaseFS, path: str) -> Seen | None:
    """The lease at ``path``; None when there is none."""
    modified = fs.modified(path)
    if modified is None:
        return None
    try:
        data = fs.read_bytes(path)
    except OSError:
        if fs.modified(path) is None:  # removed between the two calls
            return None
        raise
    return Seen(Holder.from_json(data), modified)


class Lease:
    """This process's lease on one output; refreshed by a daemon thread until released."""

    def __init__(self, fs: LeaseFS, output: str, path: str, holder: Holder) -> None:
        self.fs, self.output, self.path, self.holder = fs, output, path, holder
        self._lost: str | None = None
        self._released = False
        self._stop = threading.Event()
        self._beats = threading.Thread(target=self._refresh, daemon=True,
                                       name=f"lease {path.rpartition('/')[2]}")
        self._beats.start()

    @property
    def interval_s(self) -> float:
        return self.holder.timeout_s * BEAT_FRACTION

    def _refresh(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if not self._still_ours():
                    return
                self.fs.touch(self.path, int(time.time() * 1000))
            except Exception as err:  # noqa: BLE001 - a NameNode away for a moment, a JVM gone
                log.warning("could not refresh the lease %s: %s", self.path, err)

    def _still_ours(self) -> bool:
        """Whether the lease file is still this lease; records why not (LeaseLost's text)."""
        seen = _read(self.fs, self.path)
        if seen is not None and seen.holder == self.holder:
            return True
        how = ("its lease file was removed" if seen is None else
               f"{seen.describe()} took it over after it went unrefreshed for "
               f"{self.holder.timeout_s:g} s")
        self._lost = f"this job lost its lease on {self.output}: {how}; it will not replace it"
        log.error("%s", self._lost)
        return False

    def check(self) -> None:
        """Raise LeaseLost unless the lease is still this job's (asked before replacing the
        output)."""
        if self._lost is None and not self._released:
            self._still_ours()
        if self._lost is not None:
            raise LeaseLost(self._lost)

    def release(self) -> None:
        """Stop refreshing and remove the lease file if it is still ours; idempotent. A
        file that cannot be removed (NameNode away) expires after the timeout."""
        with _lock:
            if self._released:
                return
            self._released = True
            if _held.get(self.path) is self:
                del _held[self.path]
        self._stop.set()
        self._beats.join(self.interval_s + 30)
        if self._lost is not None:
            return
        try:
            seen = _read(self.fs, self.path)
            if seen is not None and seen.holder == self.holder:
                self.fs.delete(self.path)
                log.info("released the lease on %s", self.output)
        except Exception as err:  # noqa: BLE001 - at exit the JVM may be going too
            log.warning("could not remove the lease %s (%s): another job may take it over "
                        "after %g s", self.path, err, self.holder.timeout_s)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *_exc) -> None:
        self.release()


_lock = threading.RLock()
#: This process's leases by lease file: a job that prepared an output holds its lease until
#: it has written it.
_held: dict[str, Lease] = {}


def acquire(fs: LeaseFS, output: str, application: str) -> Lease:
    """The lease on ``output`` for this process (the one it holds already, if any); raises
    LeaseHeld naming the holder when another live job has it."""
    path = lease_path(fs, output)
    with _lock:
        held = _held.get(path)
        if held is not None and held._lost is None:
            return held
        me = Holder(application=application, host=socket.gethostname(), pid=os.getpid(),
                    since=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    timeout_s=config.LEASE_TIMEOUT_S,
                    token=uuid.uuid4().hex)
        seen, refreshed = None, False
        for _ in range(_TRIES):
            if fs.create_new(path, me.to_json()):
                lease = _held[path] = Lease(fs, output, path, me)
                shutdown.at_end(lease.release)
                log.info("took the lease on %s for %s (%s)", output, application, path)
                return lease
            seen = _read(fs, path)
            if seen is None:  # released meanwhile: try again
                continue
            if _dead_here(seen.holder):  # a crashed run on this machine: no need to wait
                _take_over(fs, path, seen, me.token, "its process on this machine is gone")
                continue
            if seen.age_s() <= seen.timeout_s:
                break
            time.sleep(seen.timeout_s * WATCH_FRACTION)  # a live holder refreshes meanwhile
            again = _read(fs, path)
            if again == seen:
                _take_over(fs, path, seen, me.token)
            elif again is not None and again.holder == seen.holder:
                refreshed = True  # alive, whatever its clock says
                break
        if seen is None:
            raise LeaseError(f"could not take the lease on {output} ({path}): it kept changing")
        when = ("is refreshed, though its clock lags ours" if refreshed else
                f"was refreshed {max(seen.age_s(), 0):.0f} s ago")
        raise LeaseHeld(f"{output} is being written by another job: {seen.describe()}; its lease "
                        f"{path} {when} (it is taken over once unrefreshed for "
                        f"{seen.timeout_s:g} s)")


def _dead_here(holder: Holder | None) -> bool:
    """A holder on this machine whose process is gone (a killed run, re-run here): dead for
    certain. A process still there, even a zombie or one with a reused pid, counts as alive,
    and the timeout decides, as it does for a holder on another machine."""
    if holder is None or holder.host != socket.gethostname():
        return False
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        return False
    return False


def _take_over(fs: LeaseFS, path: str, stale: Seen, token: str, why: str = "") -> None:
    """Remove the lease ``stale`` unless it changed since seen: move it to a name of this
    contender's own (one mover wins), check it is what was watched, else put it back."""
    aside = f"{path.removesuffix('.lease')}.{ASIDE}-{token[:8]}"
    if not fs.move_file(path, aside):
        return  # another contender moved or removed it first
    if _read(fs, aside) != stale:  # a lease made or refreshed since we looked: not ours
        if not fs.move_file(aside, path):
            fs.delete(aside)  # a newer lease is in place already: its holder finds out
        return
    fs.delete(aside)
    log.warning("took over the lease on %s from %s: %s", path, stale.describe(),
                why or f"not refreshed for {stale.age_s():.0f} s")
