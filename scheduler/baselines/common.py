"""What the baselines share: a policy that does not learn, catalogue feasibility at face value
(memoised for one round), the arrival-order loop, and the waiting records of jobs they leave pending."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from models.catalogue import ModelPreset, get_model
from models.profiles import Profile
from scheduler.catalogue_lookup import CatalogueLookup
from scheduler.cost import job_seconds
from scheduler.feasibility import choose_profile, pool_refusal, unknown_model
from scheduler.snapshot import AgentView, Assignment, Decisions, Observation, PendingJob, Snapshot, Waiting

Candidate = tuple[AgentView, Profile]  # a free agent that can run the job, and under which profile
# A baseline's own rule: which candidate takes the job, and the reason it gives.
Chooser = Callable[[ModelPreset, PendingJob, list[Candidate]], tuple[Candidate, str]]
_Kind = tuple[str, tuple[int, int], int, int]  # what choose_profile reads of an agent
_SizeKey = tuple[str, int, int, int, int]


class Baseline:
    """A baseline reads the catalogue through one cached lookup and does not learn."""

    name: str

    def __init__(self, presets: Callable[[str], ModelPreset] = get_model) -> None:
        self.catalogue = CatalogueLookup(presets)

    def observe(self, observation: Observation) -> None:
        """Baselines do not learn."""


class FaceValue:
    """choose_profile and pool_refusal for one snapshot, each worked out once per job size and card."""

    def __init__(self, catalogue: CatalogueLookup, agents: Sequence[AgentView]) -> None:
        self.agents = agents
        self._kinds = {agent.agent_id: _kind(agent) for agent in agents}
        # One agent per kind is enough to decide whether any agent of the pool can run a job.
        self._samples = list({_kind(agent): agent for agent in agents}.values())
        self._catalogue = catalogue
        self._profiles: dict[tuple[_SizeKey, _Kind], Profile | None] = {}
        self._refusals: dict[_SizeKey, str | None] = {}

    def preset(self, model_id: str) -> ModelPreset | None:
        """The catalogue preset, or None for an unknown model."""
        return self._catalogue.preset(model_id)

    def profile(self, preset: ModelPreset, job: PendingJob, agent: AgentView) -> Profile | None:
        """feasibility.choose_profile, memoised."""
        key = (_size_key(job), self._kinds[agent.agent_id])
        if key not in self._profiles:
            self._profiles[key] = choose_profile(preset, job, agent)
        return self._profiles[key]

    def waiting(self, job: PendingJob, why: str) -> Waiting:
        """The job waits: for `why`, unless no agent could ever run it or its model is unknown."""
        preset = self.preset(job.model_id)
        if preset is None:
            return Waiting(job.job_id, unknown_model(job.model_id))
        key = _size_key(job)
        if key not in self._refusals:
            self._refusals[key] = pool_refusal(preset, job, self._samples)
        refusal = self._refusals[key]
        return Waiting(job.job_id, f"no agent can run it: {refusal}" if refusal else why)


def place_in_submit_order(
    snapshot: Snapshot, catalogue: CatalogueLookup, label: str, choose: Chooser
) -> Decisions:
    """Jobs in submit order, each on the free agent `choose` picks among those that can run it.

    The loop every arrival-order baseline shares; each one differs only in its `choose` rule.
    """
    face = FaceValue(catalogue, snapshot.agents)
    free = idle_agents(snapshot)
    assignments: list[Assignment] = []
    waiting: list[Waiting] = []
    for job in sorted(snapshot.pending, key=submit_order):
        preset = face.preset(job.model_id)
        candidates: list[Candidate] = []
        if preset is not None:
            for agent in free:
                if agent.agent_id not in job.avoid_agents:
                    profile = face.profile(preset, job, agent)
                    if profile is not None:
                        candidates.append((agent, profile))
        if preset is None or not candidates:
            waiting.append(face.waiting(job, f"{label}: no free agent can run it"))
            continue
        (agent, profile), reason = choose(preset, job, candidates)
        assignments.append(assign(preset, job, agent, profile, snapshot.now, reason))
        free.remove(agent)
    return Decisions(assignments=tuple(assignments), waiting=tuple(waiting))


def idle_agents(snapshot: Snapshot) -> list[AgentView]:
    """Idle agents in id order, so every baseline is deterministic."""
    return sorted((agent for agent in snapshot.agents if agent.idle), key=lambda agent: agent.agent_id)


def submit_order(job: PendingJob) -> tuple[float, str]:
    return (job.submitted_at, job.job_id)


def assign(
    preset: ModelPreset, job: PendingJob, agent: AgentView, profile: Profile, now: float, reason: str
) -> Assignment:
    """An assignment starting now, with scheduler.cost's rough finish estimate."""
    finish = now + job_seconds(preset, job, agent, profile)
    return Assignment(job.job_id, agent.agent_id, profile, now, finish, reason)


def _kind(agent: AgentView) -> _Kind:
    return (agent.gpu_name, agent.capability, agent.vram_total, agent.ram_total)


def _size_key(job: PendingJob) -> _SizeKey:
    return (job.model_id, job.width, job.height, job.frames, job.batch)
