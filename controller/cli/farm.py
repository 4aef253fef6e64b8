"""The commands that run a farm in this process: `up` serves one, `demo` renders the examples
through an embedded one."""

from __future__ import annotations

import signal
import sys
import tempfile
import threading
from pathlib import Path

from controller.cli.client import FarmClient
from controller.cli.exits import EXIT_FAILED, EXIT_OK
from controller.cli.submit import submit_files, wait_for
from controller.farm import Farm, FarmConfig

DEMO_GPUS = ("RTX 3060", "RTX 4090")


def up_command(config: FarmConfig) -> int:
    """Serve until SIGINT or SIGTERM."""
    farm = Farm(config).start()
    agents = farm.agent_listing()
    print(f"WanFarm serving {farm.url} with {len(agents)} agent(s); data in {config.data_dir}", flush=True)
    for agent in agents:
        print(f"  {agent.agent_id}: {agent.gpu_name}{' (declared)' if agent.declared else ''}", flush=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    farm.stop(kill_agents=config.ray_address is None)
    return EXIT_OK


def demo_command(examples: Path, out_dir: Path, data_dir: Path | None) -> int:
    """An embedded farm with declared CPU agents renders the examples through its REST API."""
    with tempfile.TemporaryDirectory(prefix="wanfarm-demo-") as scratch:
        config = FarmConfig(data_dir=data_dir or Path(scratch), port=0, declared_gpus=DEMO_GPUS)
        farm = Farm(config).start()
        try:
            print(f"demo farm at {farm.url}: agents " + ", ".join(a.gpu_name for a in farm.agent_listing()))
            client = FarmClient(farm.url)
            jobs = submit_files(client, [examples], 50, False, Path(scratch))
            finished = wait_for(client, jobs)
            out_dir.mkdir(parents=True, exist_ok=True)
            for job in finished:
                for output in job.outputs:
                    path = client.download(output.url, out_dir / output.name)
                    print(f"{job.id} {job.model} on {job.agent}: {path}")
                if job.state != "succeeded":
                    print(f"{job.id} {job.model}: {job.state}: {job.error}", file=sys.stderr)
            ok = sum(job.state == "succeeded" for job in finished)
            print(f"{ok} of {len(finished)} job(s) rendered through the farm into {out_dir.resolve()}")
            return EXIT_OK if ok == len(finished) else EXIT_FAILED
        finally:
            farm.stop(kill_agents=True)
