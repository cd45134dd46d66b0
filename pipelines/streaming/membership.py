"""Static group membership: each scorer a stable group instance id, per host, group and slot.

A consumer with a group instance id is a static member of its group: when it dies, the
broker keeps its partitions for it, unowned, for session.timeout.ms, and a member that
comes back with the same id within that time takes them straight back, with no rebalance.
So a scorer restarted after a crash scores again as soon as it has started, instead of
waiting out the dead member's session and a rebalance (KIP-345).

Two live members with one id fence each other, so the default id, `HOST-GROUP-SLOT`, takes
the lowest slot that no other scorer of the group on this host holds: the slot is an flock
on a file, released by the kernel when its process exits however it exits, so a restarted
scorer finds its predecessor's slot free again and gets the same id. `--slot` (or
AGAD_SCORER_SLOT) names the slot instead, e.g. a replica's ordinal where hostnames change.

The price: a static member does not leave its group when it stops, even cleanly, so the
partitions of a scorer stopped for good move to the others only after session.timeout.ms.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import tempfile
from pathlib import Path
from typing import IO

SLOT_ENV = "AGAD_SCORER_SLOT"
MAX_SLOTS = 4096
#: Kafka's limit on a group instance id
MAX_ID_LENGTH = 249


def slot_directory() -> Path:
    """Where slot lock files live: per user, so another user's files never block one."""
    return Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / f"agad-scorer-slots-{os.getuid()}"


class SlotClaim:
    """A held slot of a group on this host; it stays held until `release()` or the process exits."""

    def __init__(self, group: str, slot: int, lock: IO):
        self.group, self.slot, self._lock = group, slot, lock

    @property
    def instance_id(self) -> str:
        return instance_id(self.group, self.slot)

    def release(self) -> None:
        self._lock.close()


def instance_id(group: str, slot: int) -> str:
    """`HOST-GROUP-SLOT`, cut to Kafka's 249 characters (keeping the slot) when a name is very long."""
    suffix = f"-{group}-{slot}"
    return (socket.gethostname()[:max(1, MAX_ID_LENGTH - len(suffix))] + suffix)[-MAX_ID_LENGTH:]


def claim_slot(group: str, slot: int | None = None, directory: Path | None = None) -> SlotClaim:
    """Hold `slot`, or the lowest free slot of `group` on this host; a named slot that another
    live scorer holds is a ValueError."""
    directory = directory or slot_directory()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = hashlib.sha256(group.encode()).hexdigest()[:16]
    for candidate in ([slot] if slot is not None else range(MAX_SLOTS)):
        lock = open(directory / f"{key}-{candidate}.lock", "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        return SlotClaim(group, candidate, lock)
    if slot is not None:
        raise ValueError(f"slot {slot} of group {group!r} is held by another scorer on this host "
                         f"(lock in {directory}); give each scorer its own --slot")
    raise ValueError(f"all {MAX_SLOTS} slots of group {group!r} on this host are held (locks in {directory})")


def parse_slot(value: str | int | None) -> int | None:
    """A slot from --slot or AGAD_SCORER_SLOT: a whole number >= 0, or None."""
    if value is None or value == "":
        return None
    try:
        slot = int(value)
    except ValueError:
        slot = -1
    if slot < 0:
        raise ValueError(f"a scorer slot must be a whole number >= 0, got {value!r} (--slot or {SLOT_ENV})")
    return slot
