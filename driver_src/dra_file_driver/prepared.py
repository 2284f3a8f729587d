"""What a prepared claim is: the domain types of the driver's node state.

The checkpoint stores these, the device state computes with them and the DRA
service answers the kubelet from them; none of those concerns belongs here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PreparedDevice:
    """One allocation result of a prepared claim."""

    request: str  # base request name, without "/subrequest"
    pool: str
    device: str
    path: str  # host path of the device file when it was prepared
    share_id: str | None = None


@dataclass(frozen=True)
class PreparedClaim:
    uid: str
    namespace: str
    name: str
    pods: tuple[str, ...]  # names of the consuming pods, in reservedFor order
    devices: tuple[PreparedDevice, ...]
