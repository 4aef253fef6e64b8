"""The `wanfarm` parser: every command's flags, and a runner per command that imports the command's
module only when it runs (so `--help` imports none of them)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from controller.cli.exits import EXIT_FAILED, EXIT_INVALID
from models.attention import AttentionMode
from models.profiles import Profile

if TYPE_CHECKING:
    from controller.cli.client import FarmClient


def default_cache() -> Path:
    """Where weights are cached: $WANFARM_CACHE, else ~/.cache/wanfarm/weights."""
    return Path(os.environ.get("WANFARM_CACHE", Path.home() / ".cache" / "wanfarm" / "weights"))


def default_lora_dir() -> Path | None:
    """Where LoRAs are found: $WANFARM_LORAS, else none (jobs that name LoRAs are refused)."""
    value = os.environ.get("WANFARM_LORAS")
    return Path(value) if value else None


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command; each sets `run`, the function that runs it."""
    parser = argparse.ArgumentParser(prog="wanfarm", description="A render farm for open video models.")
    commands = parser.add_subparsers(dest="command", required=True)

    render = commands.add_parser(
        "render",
        help="render WanGP settings on this machine",
        description="Render WanGP settings (.json object or list), a WanGP queue (.zip), the settings "
        "embedded in an output (.mp4/.png), or a folder of those, on this machine.",
    )
    render.add_argument("settings", type=Path, nargs="+", help="settings files or folders")
    render.add_argument("--out", type=Path, default=Path("outputs"), help="output folder (default: outputs)")
    render.add_argument("--dry-run", action="store_true", help="validate everything, render nothing")
    render.add_argument(
        "--profile", type=Profile.parse, default=Profile.P4, help="memory profile 1,2,3,3+,4,4+,5 (CUDA only)"
    )
    render.add_argument(
        "--attention", type=AttentionMode, default=AttentionMode.AUTO, choices=list(AttentionMode)
    )
    render.add_argument("--cache", type=Path, default=None, help="weight cache (default: $WANFARM_CACHE)")
    render.add_argument(
        "--lora-dir",
        type=Path,
        default=None,
        help="LoRA root laid out as WanGP's loras/ folder: wan/, wan_i2v/, ltxv/, flux/, qwen/ ... "
        "(default: $WANFARM_LORAS)",
    )
    render.set_defaults(run=_run_render)

    models = commands.add_parser("models", help="list the model catalogue and what each model needs")
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    models.set_defaults(run=_run_models)

    up = commands.add_parser("up", help="start a farm: join a Ray cluster or start a local one")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--data-dir", type=Path, default=Path("farm-data"), help="job store and local outputs")
    up.add_argument("--ray-address", default=None, help="join this Ray cluster (default: start a local one)")
    up.add_argument(
        "--declare-gpu",
        action="append",
        default=[],
        metavar="NAME",
        help='run a CPU agent with this GPU-table inventory, e.g. "RTX 3060" (repeatable)',
    )
    up.add_argument("--api-keys", type=Path, default=None, help="JSON list of {key, owner, role}")
    up.add_argument("--s3-bucket", default=None, help="store outputs in this S3 bucket (default: local)")
    up.add_argument("--s3-prefix", default="wanfarm/")
    up.add_argument("--s3-endpoint", default=None, help="S3-compatible endpoint URL")
    up.add_argument(
        "--weight-mirror", action="store_true", help="fill node caches from the bucket's weights/"
    )
    up.add_argument("--cache-budget-gb", type=float, default=None)
    up.add_argument(
        "--lora-dir",
        type=Path,
        default=None,
        help="LoRA root for agents whose node sets no $WANFARM_LORAS (WanGP's loras/ layout)",
    )
    up.add_argument("--policy", default="wanfarm")
    up.add_argument(
        "--checkpoint-steps",
        type=_positive_int,
        default=None,
        metavar="N",
        help="checkpoint running jobs every N denoising steps (default: by time, --checkpoint-seconds)",
    )
    up.add_argument(
        "--checkpoint-seconds",
        type=float,
        default=60.0,
        metavar="T",
        help="checkpoint running jobs every T seconds of denoising, spaced out further when writing "
        "one would cost over 2%% of it (default: 60)",
    )
    up.add_argument(
        "--gpu-classes",
        type=Path,
        default=None,
        metavar="FILE",
        help="JSON of the GPU classes the cluster's autoscaler can add (docs/autoscaling.md): the queue "
        "asks for their GPUs and idle agents of a class exit; default: a fixed pool",
    )
    up.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests for this Host name (repeatable; the bound address, and localhost "
        'on loopback, always; "*" for any, behind a proxy); a 0.0.0.0 bind answers any',
    )
    up.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="URL",
        help="let pages of this origin call the API, e.g. https://studio.example.com (repeatable; "
        "default none: the dashboard is served by the farm itself)",
    )
    up.set_defaults(run=_run_up)

    demo = commands.add_parser("demo", help="render the examples through an embedded farm, then exit")
    demo.add_argument("--examples", type=Path, default=Path("examples"))
    demo.add_argument("--out", type=Path, default=Path("outputs/demo"))
    demo.set_defaults(run=_run_demo)

    submit = commands.add_parser("submit", help="submit settings, a queue.zip or outputs to a farm")
    submit.add_argument("files", type=Path, nargs="+")
    submit.add_argument("--priority", type=int, default=50)
    submit.add_argument("--wait", action="store_true", help="follow progress until every job ends")
    submit.add_argument("--wait-for-capacity", action="store_true", help="queue even if no agent can run it")
    submit.set_defaults(run=_run_submit)

    status = commands.add_parser("status", help="list jobs, or show one")
    status.add_argument("job", nargs="?")
    status.add_argument("--state", action="append", default=None)
    status.add_argument("--limit", type=int, default=50)
    status.set_defaults(run=_run_status)

    cancel = commands.add_parser("cancel", help="cancel a job")
    cancel.add_argument("job")
    cancel.set_defaults(run=_run_cancel)

    agents = commands.add_parser("agents", help="list the farm's GPU agents")
    agents.set_defaults(run=_run_agents)

    drain, _, leave = _node_commands(commands)

    simulate = commands.add_parser(
        "simulate",
        help="compare placement policies on a simulated pool and trace",
        description="Run each policy over the pool and trace in the discrete-event simulator "
        "(see docs/simulator.md for the file formats) and compare them.",
    )
    simulate.add_argument("--pool", type=Path, required=True, help="pool JSON file")
    simulate.add_argument("--trace", type=Path, required=True, help="trace .jsonl, or a generator spec .json")
    simulate.add_argument(
        "--policy", default="wanfarm", help="comma-separated policy names (default: wanfarm, the farm's)"
    )
    simulate.add_argument("--seed", type=int, default=0, help="seed of the ground truth's draws")
    simulate.add_argument("--json", action="store_true", help="print JSON instead of a table")
    simulate.add_argument("--plot", type=Path, default=None, metavar="FILE", help="write a PNG chart")
    simulate.set_defaults(run=_run_simulate)

    for command in (submit, status, cancel, agents, drain, leave):
        command.add_argument("--server", default=None, help="farm URL (default: $WANFARM_SERVER or local)")
        command.add_argument("--api-key", default=None, help="API key (default: $WANFARM_API_KEY)")
    return parser


def _run_render(args: argparse.Namespace) -> int:
    from controller.cli.render import render_command

    return render_command(
        args.settings,
        args.out,
        args.dry_run,
        args.profile,
        args.attention,
        args.cache or default_cache(),
        args.lora_dir or default_lora_dir(),
    )


def _run_up(args: argparse.Namespace) -> int:
    from controller.auth import KeyConfigError
    from controller.cli.farm import up_command
    from controller.farm import FarmConfig, FarmConfigError
    from controller.gpu_classes import load_gpu_classes
    from gpu_agent.storage import StorageConfig
    from models.gpus import UnknownGpu, find_gpu

    try:
        declared = tuple(find_gpu(name).name for name in args.declare_gpu)
        storage = (
            StorageConfig(
                kind="s3", bucket=args.s3_bucket, prefix=args.s3_prefix, endpoint_url=args.s3_endpoint
            )
            if args.s3_bucket
            else None
        )
        config = FarmConfig(
            data_dir=args.data_dir,
            host=args.host,
            port=args.port,
            ray_address=args.ray_address,
            declared_gpus=declared,
            storage=storage,
            cache_budget_gb=args.cache_budget_gb,
            weight_mirror=args.weight_mirror,
            lora_dir=args.lora_dir or default_lora_dir(),
            policy=args.policy,
            checkpoint_steps=args.checkpoint_steps,
            checkpoint_seconds=args.checkpoint_seconds,
            scaling=load_gpu_classes(args.gpu_classes) if args.gpu_classes else None,
            api_keys=args.api_keys,
            allowed_hosts=tuple(args.allowed_host),
            cors_origins=tuple(args.cors_origin),
        )
        return up_command(config)
    except (UnknownGpu, FarmConfigError, KeyConfigError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID


def _run_demo(args: argparse.Namespace) -> int:
    from controller.cli.farm import demo_command

    return demo_command(args.examples, args.out, None)


def _run_submit(args: argparse.Namespace) -> int:
    from controller.cli.submit import submit_command

    return _with_client(
        args, lambda c: submit_command(c, args.files, args.priority, args.wait, args.wait_for_capacity)
    )


def _run_status(args: argparse.Namespace) -> int:
    from controller.cli.jobs import status_command

    return _with_client(args, lambda c: status_command(c, args.job, args.state, args.limit))


def _run_cancel(args: argparse.Namespace) -> int:
    from controller.cli.jobs import cancel_command

    return _with_client(args, lambda c: cancel_command(c, args.job))


def _run_agents(args: argparse.Namespace) -> int:
    from controller.cli.jobs import agents_command

    return _with_client(args, agents_command)


def _node_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser, argparse.ArgumentParser]:
    """`drain`, `join` and `leave`: a node's agents let go, a machine added to the farm, and removed."""
    drain = commands.add_parser(
        "drain",
        help="drain a node's agents: no new work, their job stops with a checkpoint (or finishes), they exit",
    )
    drain.add_argument(
        "node", nargs="?", help="agent id, node id (or a unique prefix), node name or hostname"
    )
    drain.add_argument(
        "--this-node", action="store_true", help="the node `wanfarm join` started here, else this hostname"
    )
    drain.add_argument(
        "--finish", action="store_true", help="let the running job finish instead of stopping it"
    )
    drain.add_argument("--wait", action="store_true", help="return once the agents are gone")
    drain.add_argument(
        "--timeout", type=float, default=600.0, metavar="S", help="--wait's limit (default: 600)"
    )
    drain.set_defaults(run=_run_drain)

    join = commands.add_parser(
        "join",
        help="add this machine to a farm as a Ray worker node",
        description="Start a Ray worker node here, joined to the farm's Ray head, offering this machine's "
        "GPUs (or declared ones), its weight cache and GPU class. The head's token, when it checks one, "
        "is read from --token-file, $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token.",
    )
    join.add_argument("head", help="the Ray head's HOST:PORT (port default 6379)")
    join.add_argument(
        "--declare-gpu",
        action="append",
        default=[],
        metavar="NAME",
        help="a GPU-table card this CPU node renders as (repeatable)",
    )
    join.add_argument("--ram-gb", type=float, default=None, metavar="G", help="RAM the declared node offers")
    join.add_argument(
        "--cache", type=Path, default=None, metavar="DIR", help="weight cache of this node's agents"
    )
    join.add_argument(
        "--lora-dir", type=Path, default=None, metavar="DIR", help="LoRA root of this node's agents"
    )
    join.add_argument(
        "--gpu-class", default=None, metavar="NAME", help="the autoscaler's GPU class of this node"
    )
    join.add_argument(
        "--node-name", default=None, metavar="N", help="Ray's name of the node (default: the hostname)"
    )
    join.add_argument(
        "--token-file", type=Path, default=None, metavar="FILE", help="a file holding the head's Ray token"
    )
    join.add_argument(
        "--num-cpus", type=int, default=None, metavar="N", help="CPUs the node offers (default: Ray's count)"
    )
    join.set_defaults(run=_run_join)

    leave = commands.add_parser("leave", help="drain this machine's node (`wanfarm join`) and stop it")
    leave.add_argument("--timeout", type=float, default=600.0, metavar="S", help="how long draining may take")
    leave.add_argument("--force", action="store_true", help="stop the node even if it could not be drained")
    leave.set_defaults(run=_run_leave)
    return drain, join, leave


def _run_drain(args: argparse.Namespace) -> int:
    from controller.cli.drain import drain_command, this_node

    if bool(args.node) == args.this_node:
        print("error: name one NODE, or give --this-node", file=sys.stderr)
        return EXIT_INVALID
    node = this_node() if args.this_node else args.node
    return _with_client(
        args,
        lambda c: drain_command(c, node, args.finish, args.wait, args.timeout, none_ok=args.this_node),
    )


def _run_join(args: argparse.Namespace) -> int:
    import socket

    from controller.cli.join import JoinRequest, head_address, join_command
    from models.gpus import UnknownGpu, find_gpu
    from scheduler.demand import CLASS_NAME

    try:
        if args.gpu_class is not None and not CLASS_NAME.match(args.gpu_class):
            raise ValueError(
                f"--gpu-class {args.gpu_class!r}: a class name is lowercase letters, digits and -"
            )
        request = JoinRequest(
            head=head_address(args.head),
            node_name=args.node_name or socket.gethostname(),
            declared=tuple(find_gpu(name).name for name in args.declare_gpu),
            ram_gb=args.ram_gb,
            cache=args.cache,
            lora_dir=args.lora_dir,
            gpu_class=args.gpu_class,
            num_cpus=args.num_cpus,
            token_file=args.token_file,
        )
    except (UnknownGpu, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    return join_command(request)


def _run_leave(args: argparse.Namespace) -> int:
    from controller.cli.leave import leave_command

    return _with_client(args, lambda c: leave_command(c, args.timeout, args.force))


def _with_client(args: argparse.Namespace, command: Callable[[FarmClient], int]) -> int:
    from controller.cli.client import FarmClient, FarmError

    client = FarmClient(args.server, args.api_key)
    try:
        return command(client)
    except FarmError as error:
        print(f"error: {error}", file=sys.stderr)
        # A refusal of what was sent is invalid input; an unreachable or failing farm is a failure.
        return EXIT_INVALID if 400 <= error.status < 500 else EXIT_FAILED
    finally:
        client.close()


def _run_models(args: argparse.Namespace) -> int:
    from controller.cli.models import models_command

    return models_command(as_json=args.json)


def _run_simulate(args: argparse.Namespace) -> int:
    from controller.cli.simulate import simulate_command

    return simulate_command(args.pool, args.trace, args.policy.split(","), args.seed, args.json, args.plot)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be 1 or more")
    return value
