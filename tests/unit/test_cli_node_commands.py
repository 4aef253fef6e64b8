"""`wanfarm drain`, `join` and `leave` without a cluster: which agents a NODE names, where the Ray
token is found, and what `ray start` is given. tests/integration/test_join_leave.py runs them for real."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.cli import main
from controller.cli.drain import NoSuchNode, match_agents, this_node
from controller.cli.join import JoinRequest, head_address, ray_start_argv
from controller.cli.node_state import JoinedNode, NodeProcess, save_joined
from controller.cli.ray_token import TokenError, find_token
from controller.schemas import AgentOut
from tests.unit.cli_cold_start import light_farm

NODE_A = "a1b2c3d4" + "0" * 48
NODE_B = "a1b2ffff" + "1" * 48


def agent(node_id: str, index: int, node_name: str, hostname: str = "pc") -> AgentOut:
    return AgentOut(
        agent_id=f"{node_id[:8]}-gpu{index}",
        node_id=node_id,
        hostname=hostname,
        node_name=node_name,
        gpu_index=index,
        gpu_name="RTX 3060",
        arch="ampere",
        capability="8.6",
        vram_total=12 << 30,
        vram_free=12 << 30,
        ram_total=32 << 30,
        disk_free=100 << 30,
        cached_models=[],
        hot_model=None,
        declared=True,
        device="cpu",
        busy=False,
        current_job=None,
    )


AGENTS = [agent(NODE_A, 0, "lab-a"), agent(NODE_A, 1, "lab-a"), agent(NODE_B, 0, "lab-b", "other-pc")]


def ids(agents: list[AgentOut]) -> list[str]:
    return [a.agent_id for a in agents]


def test_a_node_is_named_by_agent_id_node_id_node_name_hostname_or_unique_id_prefix() -> None:
    assert ids(match_agents(AGENTS, "a1b2c3d4-gpu1")) == ["a1b2c3d4-gpu1"]
    assert ids(match_agents(AGENTS, "lab-a")) == ["a1b2c3d4-gpu0", "a1b2c3d4-gpu1"]
    assert ids(match_agents(AGENTS, NODE_B)) == ["a1b2ffff-gpu0"]
    assert ids(match_agents(AGENTS, "other-pc")) == ["a1b2ffff-gpu0"]
    assert ids(match_agents(AGENTS, "pc")) == ["a1b2c3d4-gpu0", "a1b2c3d4-gpu1"]  # a hostname: all its nodes
    assert ids(match_agents(AGENTS, "a1b2c3")) == ["a1b2c3d4-gpu0", "a1b2c3d4-gpu1"]


def test_an_ambiguous_short_or_unknown_node_is_refused_listing_the_nodes() -> None:
    with pytest.raises(NoSuchNode, match="starts the ids of 2 nodes"):
        match_agents(AGENTS, "a1b2")
    with pytest.raises(NoSuchNode, match="no agent, node id, node name or hostname 'a1b'"):
        match_agents(AGENTS, "a1b")  # too short to be taken for a prefix
    with pytest.raises(NoSuchNode) as refused:
        match_agents(AGENTS, "lab-c")
    listing = str(refused.value)
    assert "name lab-a  host pc  agents a1b2c3d4-gpu0, a1b2c3d4-gpu1" in listing
    assert "name lab-b  host other-pc  agents a1b2ffff-gpu0" in listing


def test_drain_names_a_missing_node_on_a_real_farm_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with light_farm(tmp_path) as url:
        assert main(["drain", "lab-a", "--server", url]) == 2
        err = capsys.readouterr().err
        assert "'lab-a'" in err and "(the farm has no agents)" in err
        assert main(["drain", "--server", url]) == 2  # neither NODE nor --this-node
        assert main(["drain", "lab-a", "--this-node", "--server", url]) == 2
        # This machine's own node without agents (a pod stopping before its agent started): nothing to do.
        assert main(["drain", "--this-node", "--wait", "--server", url]) == 0
        assert "nothing to drain" in capsys.readouterr().out


def test_this_node_is_the_joined_node_else_the_hostname(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANFARM_HOME", str(tmp_path))
    monkeypatch.setattr("socket.gethostname", lambda: "worker-pod-7")
    assert this_node() == "worker-pod-7"
    me = NodeProcess(1, 0.0)
    save_joined(JoinedNode("head:6379", "lab-a", NODE_A, me, (me,), "log"))
    assert this_node() == NODE_A
    assert json.loads((tmp_path / "node.json").read_text())["node_name"] == "lab-a"


def test_the_token_is_found_in_rays_order_after_an_explicit_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("from-home\n")
    given, path_file = tmp_path / "given", tmp_path / "by-path"
    given.write_text("from-file")
    path_file.write_text("from-path")
    env = {"RAY_AUTH_TOKEN": "from-env", "RAY_AUTH_TOKEN_PATH": str(path_file)}

    def value(token_file: Path | None, environ: dict[str, str]) -> str | None:
        found = find_token(token_file, environ, home)
        return found.value if found else None

    assert value(given, env) == "from-file"
    assert value(None, env) == "from-env"
    assert value(None, {"RAY_AUTH_TOKEN_PATH": str(path_file)}) == "from-path"
    assert value(None, {}) == "from-home"
    assert find_token(None, {}, tmp_path / "nobody") is None
    found = find_token(None, env, home)
    assert found is not None and found.source == "$RAY_AUTH_TOKEN"  # named, never shown
    assert found.environment() == {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "from-env"}


def test_a_named_token_source_that_holds_none_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TokenError, match="cannot read the Ray token from"):
        find_token(tmp_path / "missing", {}, tmp_path)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(TokenError, match="is empty"):
        find_token(None, {"RAY_AUTH_TOKEN_PATH": str(tmp_path / "empty")}, tmp_path)


def test_head_addresses_take_rays_default_port() -> None:
    assert head_address("192.168.1.10") == "192.168.1.10:6379"
    assert head_address("head-pc:7000") == "head-pc:7000"
    for bad in ("", ":6379", "head:port", "head:70000"):
        with pytest.raises(ValueError, match="not a Ray head address"):
            head_address(bad)


def test_ray_start_carries_declared_gpus_ram_class_and_name_and_never_a_token() -> None:
    request = JoinRequest(
        head="10.0.0.2:6379",
        node_name="lab-b",
        declared=("RTX 3060", "RTX 4090"),
        ram_gb=32.0,
        gpu_class="gpu-12",
        num_cpus=4,
        token_file=Path("/secret/token"),
    )
    argv = ray_start_argv("ray", request, class_gpus=2)
    assert argv[:4] == ["ray", "start", "--block", "--address"]
    assert argv[4] == "10.0.0.2:6379" and argv[argv.index("--node-name") + 1] == "lab-b"
    assert argv[argv.index("--num-gpus") + 1] == "2"
    labels = argv[argv.index("--labels") + 1]
    assert labels == "wanfarm.io/declared-gpus=RTX-3060_RTX-4090,wanfarm.io/declared-ram-gb=32"
    assert json.loads(argv[argv.index("--resources") + 1]) == {"wanfarm_class_gpu_12": 2}
    assert argv[argv.index("--num-cpus") + 1] == "4"
    assert not any("token" in arg.lower() for arg in argv)
    plain = ray_start_argv("ray", JoinRequest(head="h:6379", node_name="pc"), class_gpus=0)
    assert "--num-gpus" not in plain and "--labels" not in plain and "--resources" not in plain
