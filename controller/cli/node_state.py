"""What `wanfarm join` leaves for `wanfarm leave` and `wanfarm drain --this-node`: the node it
started on this machine, in $WANFARM_HOME/node.json (default ~/.wanfarm/node.json).

Each process is kept with its start time, so a pid the system has since given to another program
is never signalled."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

HOME_ENV = "WANFARM_HOME"


@dataclass(frozen=True)
class NodeProcess:
    pid: int
    started: float  # psutil's create_time: the same pid with another start time is another program


@dataclass(frozen=True)
class JoinedNode:
    head: str  # the Ray head's address as join was given it
    node_name: str
    node_id: str  # Ray's node id (hex); "" when it could not be learned
    root: NodeProcess  # `ray start --block`: the parent of the node's processes
    processes: tuple[NodeProcess, ...]  # every process of the node when join returned
    log: str  # ray start's output


def wanfarm_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".wanfarm")


def state_file() -> Path:
    return wanfarm_home() / "node.json"


def load_joined(path: Path | None = None) -> JoinedNode | None:
    """The node this machine joined, if join's state file (default: `state_file()`) is there."""
    path = path or state_file()
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return JoinedNode(
        head=data["head"],
        node_name=data["node_name"],
        node_id=data["node_id"],
        root=NodeProcess(**data["root"]),
        processes=tuple(NodeProcess(**p) for p in data["processes"]),
        log=data["log"],
    )


def save_joined(node: JoinedNode) -> Path:
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(node), indent=2) + "\n")
    return path


def forget_joined() -> None:
    state_file().unlink(missing_ok=True)
