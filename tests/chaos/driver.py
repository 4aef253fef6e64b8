"""The chaos driver: a farm on a multi-node Ray cluster of this machine, S3 on moto's server and the
controller as its own process, renders a seeded mix of tiny jobs while faults hit it at seeded
moments; then every promise is checked and what the run did and cost is printed.

    python -m tests.chaos.driver --seed 3 --jobs 60     (make chaos SEED=3)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray.cluster_utils import Cluster

from controller.cli.client import FarmClient, FarmError
from controller.jobs import JobState
from controller.ray_cluster import DECLARED_LABEL, DECLARED_RAM_LABEL, NAMESPACE, encode_declared
from controller.schemas import AgentOut, JobSummary
from controller.store import JobStore
from tests.chaos import faults
from tests.chaos.checks import Expected, Findings, check_jobs, leftover_folders
from tests.chaos.faults import Fault, FaultKind, FullFolder
from tests.chaos.services import CREDENTIALS, ControllerProcess, S3Service

PREFIX = "farm/"
GPUS = ("RTX 4090", "RTX 3090", "RTX 4080", "RTX 3060")
FINISHED = {JobState.SUCCEEDED.value, JobState.FAILED.value, JobState.CANCELED.value}
# Faults that need a job running on their target to mean anything pick a busy agent when one is.
EVERY_KIND = tuple(FaultKind)
# What the farm's own /metrics say attempts cost: read before each controller kill and at the end.
COUNTERS = (
    "wanfarm_steps_redone_total",
    "wanfarm_steps_resumed_total",
    "wanfarm_checkpoints_total",
    "wanfarm_checkpoint_bytes_total",
    "wanfarm_checkpoint_seconds_total",
)


@dataclass(frozen=True)
class ChaosConfig:
    seed: int
    jobs: int = 60
    nodes: int = 3
    kinds: tuple[FaultKind, ...] = EVERY_KIND
    fault_gap_s: tuple[float, float] = (8.0, 20.0)  # between one fault's end and the next
    outage_s: tuple[float, float] = (10.0, 30.0)  # how long S3 stays down
    full_s: tuple[float, float] = (10.0, 20.0)  # how long a work folder stays full
    long_steps: int = 150  # the long job's steps
    checkpoint_steps: int = 10  # the farm checkpoints a job every N steps (the long one only, here)
    time_limit_s: float = 1500.0
    rounds: int = 2  # how many times each kind of fault is injected (a node vanishes once)


@dataclass
class ChaosReport:
    seed: int
    jobs: int
    outputs: int
    seconds: float
    faults: list[Fault] = field(default_factory=list)
    findings: Findings = field(default_factory=Findings)
    excused_folders: int = 0
    cost: dict[str, float] = field(default_factory=dict)  # the farm's counters (COUNTERS)

    @property
    def passed(self) -> bool:
        return not self.findings.problems

    def render(self) -> str:
        lines = [f"chaos seed {self.seed}: {self.jobs} jobs, {self.outputs} outputs, {self.seconds:.0f} s"]
        for fault in self.faults:
            took = "" if fault.recovered_s is None else f"; recovered in {fault.recovered_s:.1f} s"
            lines.append(f"  {fault.at_s:6.1f} s  {fault.kind.value}: {fault.target} ({fault.detail}){took}")
        survived = Counter(fault.kind.value for fault in self.faults)
        lines.append("survived: " + ", ".join(f"{kind} x{count}" for kind, count in sorted(survived.items())))
        by_kind: dict[str, list[float]] = {}
        for fault in self.faults:
            if fault.recovered_s is not None:
                by_kind.setdefault(fault.kind.value, []).append(fault.recovered_s)
        for kind, seconds in sorted(by_kind.items()):
            lines.append(
                f"seconds to recover, {kind}: max {max(seconds):.1f}, mean {sum(seconds) / len(seconds):.1f}"
            )
        found = self.findings
        lines.append(
            f"attempts: {found.attempts} for {self.jobs} jobs; denoising steps: {found.steps_needed} needed, "
            f"{found.steps_lost} rendered by attempts that did not finish (redone)"
        )
        if self.cost:
            lines.append(
                "the farm's counters: "
                + ", ".join(
                    f"{name.removeprefix('wanfarm_').removesuffix('_total')} {value:g}"
                    for name, value in self.cost.items()
                )
            )
        lines += [f"  attempt error: {line[:300]}" for line in found.attempt_errors]
        if self.excused_folders:
            lines.append(
                f"task folders the full-folder mount hid from their agent, removed: {self.excused_folders}"
            )
        lines.append("PASSED" if self.passed else "FAILED:")
        lines += [f"  {problem}" for problem in found.problems]
        return "\n".join(lines)

    def as_json(self) -> str:
        return json.dumps({**asdict(self), "passed": self.passed}, default=str)


def run(config: ChaosConfig, folder: Path) -> ChaosReport:
    """One seeded chaos run in `folder`; its report (problems listed, never raised)."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    saved = {name: os.environ.get(name) for name in CREDENTIALS}
    os.environ.update(CREDENTIALS)  # before the cluster starts: its raylets pass them on to agents
    try:
        return _run(config, folder)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _run(config: ChaosConfig, folder: Path) -> ChaosReport:
    rng = random.Random(config.seed)
    s3 = S3Service(_free_port())
    s3.start()
    bucket = f"chaos-{config.seed}"
    s3.client().create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    chaos = _Chaos(config, rng, folder, s3, bucket, cluster)
    try:
        return chaos.run()
    finally:
        chaos.close()


class _Chaos:
    def __init__(
        self,
        config: ChaosConfig,
        rng: random.Random,
        folder: Path,
        s3: S3Service,
        bucket: str,
        cluster: Cluster,
    ) -> None:
        self.config, self.rng, self.folder, self.s3, self.bucket, self.cluster = (
            config,
            rng,
            folder,
            s3,
            bucket,
            cluster,
        )
        self.nodes: dict[str, Any] = {}  # node id -> ray's Node, for the raylet's pid
        for index in range(config.nodes):
            self._add_node(GPUS[index % len(GPUS)])
        ray.init(address=cluster.address, namespace=NAMESPACE, logging_level=logging.WARNING)
        self.data_dir = folder / "farm"
        self.controller = ControllerProcess(
            cluster.address, self.data_dir, _free_port(), bucket, s3.endpoint, PREFIX, config.checkpoint_steps
        )
        self.cost = dict.fromkeys(COUNTERS, 0.0)  # the controller's counters, over its restarts
        self.client = FarmClient(self.controller.url)
        self.started = 0.0
        self.faults: list[Fault] = []
        self.agent_ids: set[str] = set()
        self.excused: set[Path] = set()
        self.expected: list[Expected] = []

    def run(self) -> ChaosReport:
        self.controller.start(agents=len(self.nodes))
        self.started = time.monotonic()
        self.expected = self._submit()
        kinds = self._kinds()
        while not self._all_finished():
            if self._elapsed() > self.config.time_limit_s:
                break
            gap = self.rng.uniform(*self.config.fault_gap_s)
            self._wait_or_finish(gap)
            if kinds and not self._all_finished():
                self._inject(kinds.pop(0))
        while not self._all_finished() and self._elapsed() < self.config.time_limit_s:
            time.sleep(1)
        seconds = self._elapsed()
        self._count_cost()
        self.controller.stop()
        findings = self._check()
        outputs = sum(job.outputs for job in self.expected)
        report = ChaosReport(self.config.seed, len(self.expected), outputs, seconds, self.faults, findings)
        report.excused_folders = len(self.excused)
        report.cost = self.cost
        return report

    def close(self) -> None:
        self.client.close()
        self.controller.stop()
        if ray.is_initialized():
            ray.shutdown()
        try:
            self.cluster.shutdown()
        finally:
            self.s3.stop()

    # -- the jobs --------------------------------------------------------------------------------

    def _submit(self) -> list[Expected]:
        """The mix, submitted as batches of settings lists: one long job, repeats, batches of
        images, and short jobs of two models, with seeded steps and seeds."""
        mix: list[tuple[dict[str, Any], int]] = [
            (_tiny("wan-tiny", num_inference_steps=self.config.long_steps), 1)
        ]
        for index in range(1, self.config.jobs):
            draw = self.rng.random()
            steps = self.rng.randint(2, 8)
            if draw < 0.15:
                mix.append((_tiny("wan-tiny", seed=index, num_inference_steps=steps, repeat_generation=2), 2))
            elif draw < 0.3:
                mix.append((_tiny("flux-tiny", seed=index, num_inference_steps=steps, batch_size=2), 2))
            else:
                model = "wan-tiny" if self.rng.random() < 0.3 else "flux-tiny"
                mix.append((_tiny(model, seed=index, num_inference_steps=steps), 1))
        expected = []
        for start in range(0, len(mix), 10):
            batch = mix[start : start + 10]
            submitted = self.client.submit([settings for settings, _ in batch])
            expected += [
                Expected(job.id, outputs) for job, (_, outputs) in zip(submitted.jobs, batch, strict=True)
            ]
        return expected

    def _jobs(self) -> list[JobSummary]:
        while True:
            try:
                return self.client.jobs(limit=500).jobs
            except (FarmError, OSError):
                time.sleep(0.5)  # the controller is down: it comes back

    def _agents(self) -> list[AgentOut]:
        while True:
            try:
                agents = self.client.agents()
                self.agent_ids |= {agent.agent_id for agent in agents}
                return agents
            except (FarmError, OSError):
                time.sleep(0.5)

    def _all_finished(self) -> bool:
        return all(job.state in FINISHED for job in self._jobs())

    def _wait_or_finish(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self._all_finished():
            self._agents()
            time.sleep(1)

    # -- the faults ------------------------------------------------------------------------------

    def _kinds(self) -> list[FaultKind]:
        """Each kind once, in a seeded order, then again for each further round while jobs remain;
        a node vanishes once."""
        kinds = list(self.config.kinds)
        self.rng.shuffle(kinds)
        again = [kind for kind in kinds if kind is not FaultKind.FREEZE_NODE]
        self.rng.shuffle(again)
        return kinds + again * (self.config.rounds - 1)

    def _inject(self, kind: FaultKind) -> None:
        at = self._elapsed()
        inject = {
            FaultKind.KILL_ACTOR: self._kill_agent,
            FaultKind.KILL_WORKER: self._kill_agent,
            FaultKind.KILL_CONTROLLER: self._kill_controller,
            FaultKind.S3_OUTAGE: self._s3_outage,
            FaultKind.CORRUPT_CACHE: self._corrupt_cache,
            FaultKind.FILL_WORKSPACE: self._fill_workspace,
            FaultKind.FREEZE_NODE: self._freeze_node,
        }[kind]
        target, detail, recovered = inject(kind)
        fault = Fault(kind, at, target, detail, recovered)
        self.faults.append(fault)
        took = "" if recovered is None else f", recovered in {recovered:.1f} s"
        print(f"[chaos {at:6.1f} s] {kind.value}: {target} ({detail}){took}", flush=True)

    def _victim(self) -> tuple[AgentOut, JobSummary | None]:
        """A busy agent with the job on its GPU, when there is one; else any agent."""
        agents = self._agents()
        # Never a job's last attempt: max_attempts is the farm's guard against a job that kills its
        # worker every time, and the driver's kills are not that job.
        running = {
            job.id: job
            for job in self._jobs()
            if job.state == JobState.RUNNING.value and job.attempts < job.max_attempts
        }
        busy = [agent for agent in agents if agent.current_job in running]
        if busy:
            agent = self.rng.choice(busy)
            return agent, running[agent.current_job or ""]
        return self.rng.choice(agents), None

    def _kill_agent(self, kind: FaultKind) -> tuple[str, str, float | None]:
        agent, job = self._victim()
        killed = time.monotonic()
        if kind is FaultKind.KILL_ACTOR:
            faults.kill_actor(agent.agent_id)
            detail = "ray.kill"
        else:
            detail = f"SIGKILL pid {faults.kill_worker(agent.agent_id)}"
        recovered = self._requeued(job, killed) if job is not None else None
        if job is not None:
            detail += f", job {job.id} attempt {job.attempts}"
        back = self._agents_back(killed)
        return agent.agent_id, f"{detail}; agents all back after {back:.1f} s", recovered

    def _requeued(self, job: JobSummary, since: float, timeout_s: float = 300) -> float | None:
        """Seconds from `since` until the job left the attempt that was hit."""
        while time.monotonic() - since < timeout_s:
            try:
                now = self.client.job(job.id)
            except (FarmError, OSError):
                now = None
            if now is not None and (now.attempts != job.attempts or now.state != JobState.RUNNING.value):
                return time.monotonic() - since
            time.sleep(0.2)
        return None

    def _agents_back(self, since: float, timeout_s: float = 300) -> float:
        while len(self._agents()) < len(self.nodes) and time.monotonic() - since < timeout_s:
            time.sleep(0.3)
        return time.monotonic() - since

    def _kill_controller(self, _: FaultKind) -> tuple[str, str, float | None]:
        self._count_cost()
        killed = time.monotonic()
        self.controller.kill()
        down = self.rng.uniform(1, 5)
        time.sleep(down)
        self.controller.start(agents=len(self.nodes))
        return "controller", f"SIGKILL, down {down:.1f} s, then serving all agents", time.monotonic() - killed

    def _s3_outage(self, _: FaultKind) -> tuple[str, str, float | None]:
        outage = self.rng.uniform(*self.config.outage_s)
        before = self._succeeded()
        self.s3.stop()
        time.sleep(outage)
        self.s3.start()
        back = time.monotonic()
        recovered = None
        while time.monotonic() - back < 300 and not self._all_finished():
            if self._succeeded() > before:
                recovered = time.monotonic() - back
                break
            time.sleep(0.5)
        return self.s3.endpoint, f"down {outage:.1f} s; recovered = until a job succeeded after", recovered

    def _succeeded(self) -> int:
        return sum(job.state == JobState.SUCCEEDED.value for job in self._jobs())

    def _corrupt_cache(self, _: FaultKind) -> tuple[str, str, float | None]:
        agents = self._agents()
        agent = self.rng.choice(agents)
        cold = [model for model in agent.cached_models if model != agent.hot_model] or agent.cached_models
        model = self.rng.choice(sorted(cold)) if cold else "wan-tiny"
        node_cache = self.data_dir / "weights" / agent.node_id[:12]
        victim = faults.corrupt_cache(node_cache, model)
        detail = f"{victim.relative_to(node_cache)} cut in half" if victim else f"no cached {model} file"
        return f"node {agent.node_id[:12]}", detail, None

    def _fill_workspace(self, _: FaultKind) -> tuple[str, str, float | None]:
        if not FullFolder.available():
            return "-", "skipped: mounting a tmpfs needs root", None
        agent, _job = self._victim()
        folder = faults.agent_workspace(agent.agent_id)
        if folder is None:
            return agent.agent_id, "skipped: its work folder was not found", None
        full = FullFolder(folder)
        held = self.rng.uniform(*self.config.full_s)
        full.fill()
        try:
            self._wait_or_finish(held)
        finally:
            hidden = full.empty()
        self.excused |= {folder / name for name in hidden}
        return agent.agent_id, f"no space left for {held:.1f} s", None

    def _freeze_node(self, _: FaultKind) -> tuple[str, str, float | None]:
        """SIGSTOP every process of a node running a job: it neither answers nor dies, as behind
        a pulled cable. Recovered: seconds until its job was queued again. Then the node is killed
        for good and a new one joins in its place."""
        agent, job = self._victim()
        node = self.nodes.pop(agent.node_id)
        processes = faults.node_processes(node.all_processes["raylet"][0].process.pid)
        stopped = time.monotonic()
        faults.signal_all(processes, signal.SIGSTOP)
        detected = self._requeued(job, stopped, timeout_s=600) if job is not None else None
        faults.signal_all(processes, signal.SIGKILL)
        try:
            self.cluster.remove_node(node, allow_graceful=False)
        except Exception as error:  # its processes are gone already
            print(f"[chaos] removing the frozen node: {error}", flush=True)
        self._add_node(agent.gpu_name)
        back = self._agents_back(stopped)
        detail = f"{len(processes)} processes stopped" + (f", job {job.id}" if job else ", no job on it")
        return (
            f"node {agent.node_id[:12]}",
            f"{detail}; a new node's agent serving after {back:.1f} s",
            detected,
        )

    def _add_node(self, gpu: str) -> None:
        labels = {DECLARED_LABEL: encode_declared((gpu,)), DECLARED_RAM_LABEL: "64"}
        node = self.cluster.add_node(num_cpus=1, num_gpus=1, labels=labels)
        self.nodes[node.node_id] = node

    # -- after -----------------------------------------------------------------------------------

    def _check(self) -> Findings:
        store = JobStore(self.data_dir / "jobs.db")
        try:
            ids = [job.job_id for job in self.expected]
            records = {record.id: record for record in store.get_many(ids)}
            history = {job_id: store.events(job_id, limit=100_000) for job_id in ids}
        finally:
            store.close()
        findings = check_jobs(self.expected, records, history, self.s3.keys(self.bucket), PREFIX)
        for path in self.excused:
            _remove(path)
        for folder in leftover_folders(self.agent_ids, self.excused):
            findings.problems.append(f"work folder left: {folder}")
        return findings

    def _count_cost(self) -> None:
        for name, value in self.controller.counters(COUNTERS).items():
            self.cost[name] += value

    def _elapsed(self) -> float:
        return time.monotonic() - self.started


def _tiny(model: str, **settings: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"model_type": model, "prompt": "chaos", "seed": 1}
    if model == "wan-tiny":
        base["video_length"] = 9
    return base | settings


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument(
        "--kinds", default=",".join(kind.name for kind in EVERY_KIND), help="faults to inject"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    kinds = tuple(FaultKind[name.strip().upper()] for name in args.kinds.split(",") if name.strip())
    config = ChaosConfig(seed=args.seed, jobs=args.jobs, nodes=args.nodes, kinds=kinds)
    with tempfile.TemporaryDirectory(prefix="wanfarm-chaos-") as scratch:
        report = run(config, Path(scratch))
    print(report.render(), flush=True)
    if args.json:
        args.json.write_text(report.as_json())
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
