"""Which rank runs where, so that a collective failing on a lost peer names the rank and host."""
from __future__ import annotations

import re
import socket

# gloo names the peer as [address]:port ("Connection closed by peer [10.213.7.12]:1233",
# "Read error [10.213.7.12]:53476: Connection reset by peer"); NCCL as "peer 10.0.0.2<port>".
_PEER = re.compile(r"\[(\d{1,3}(?:\.\d{1,3}){3})\]:\d+|peer (\d{1,3}(?:\.\d{1,3}){3})")
_LOST = ("by peer", "Connection refused", "remote process exited", "Socket Timeout", "Timed out")


def _address() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "?"


def rank_hosts(strategy) -> list[tuple[str, str]]:
    """Every rank's (host name, address), in rank order, on every rank."""
    mine = (socket.gethostname(), _address())
    if strategy.world_size == 1:
        return [mine]
    return strategy.broadcast_object(strategy.gather_objects(mine))


def lost_peer(exc: BaseException, hosts: list[tuple[str, str]], rank: int) -> str | None:
    """The one line for a collective that failed because a peer died (None: another error)."""
    match = _PEER.search(str(exc))
    if match is None or len(hosts) < 2 or not any(word in str(exc) for word in _LOST):
        return None
    address = match.group(1) or match.group(2)
    lost = [r for r, (_, a) in enumerate(hosts) if a == address]
    where = f"host {hosts[lost[0]][0]} ({address})" if lost else f"address {address}"
    ranks = f"rank{'s' if len(lost) > 1 else ''} {','.join(map(str, lost))} on " if lost else "a rank on "
    reason = str(exc).split("] ", 1)[-1].split(". ")[0]
    return (f"lost {ranks}{where}: {reason} (seen by rank {rank} on {hosts[rank][0]}); the job stops here; "
            f"its last checkpoint resumes it (a requeue, torchrun --max-restarts, or resume=<run folder>)")
