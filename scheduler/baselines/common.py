"""What the baselines share: a policy that does not learn, catalogue feasibility at face value
(memoised for one round), the arrival-order loop, and the waiting records of jobs they leave pending."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from models.attention import AttentionMode
from models.catalogue import ModelPreset, get_model
from models.overrides import Overrides
from models.profiles import Profile
from scheduler.catalogue_lookup import CatalogueLookup
from scheduler.cost import job_seconds
from scheduler.feasibility import choose_profile, pool_refusal, unknown_model
from scheduler.snapshot import AgentView, Assignment, Decisions, Observation, PendingJob, Snapshot, Waiting

Candidate = tuple[AgentView, Profile]  # a free agent that can run the job, and under which profile
Choice = tuple[Candidate, str]  # the candidate that takes the job, and the reason it gives
# What choose_profile reads of an agent.
_Kind = tuple[str, tuple[int, int], int, int, frozenset[AttentionMode] | None, frozenset[str] | None]


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
        # Keyed by WorkSize.key and what the job forces: feasibility depends on those and the card.
        self._profiles: dict[tuple[tuple[object, ...], Overrides | None, _Kind], Profile | None] = {}
        self._refusals: dict[tuple[tuple[object, ...], Overrides | None], str | None] = {}

    def preset(self, model_id: str) -> ModelPreset | None:
        """The catalogue preset, or None for an unknown model."""
        return self._catalogue.preset(model_id)

    def profile(self, preset: ModelPreset, job: PendingJob, agent: AgentView) -> Profile | None:
        """feasibility.choose_profile, memoised."""
        key = (job.work.key, job.overrides, self._kinds[agent.agent_id])
        if key not in self._profiles:
            self._profiles[key] = choose_profile(preset, job.work, agent, job.overrides)
        return self._profiles[key]

    def waiting(self, job: PendingJob, why: str) -> Waiting:
        """The job waits: for `why`, unless no agent could ever run it or its model is unknown."""
        work = job.work
        preset = self.preset(work.model_id)
        if preset is None:
            return Waiting(job.job_id, unknown_model(work.model_id))
        key = (work.key, job.overrides)
        if key not in self._refusals:
            self._refusals[key] = pool_refusal(preset, work, self._samples, job.overrides)
        refusal = self._refusals[key]
        return Waiting(job.job_id, f"no agent can run it: {refusal}" if refusal else why)


class SubmitOrderBaseline(Baseline):
    """Jobs in submit order, each on the free agent `choose` picks among those that can run it: the
    arrival-order baselines share this loop and differ only in their `choose` rule."""

    def place(self, snapshot: Snapshot) -> Decisions:
        """Each job in submit order to the free agent its rule picks, if any free agent can run it."""
        face = FaceValue(self.catalogue, snapshot.agents)
        free = idle_agents(snapshot)
        assignments: list[Assignment] = []
        waiting: list[Waiting] = []
        for job in sorted(snapshot.pending, key=submit_order):
            preset = face.preset(job.work.model_id)
            candidates: list[Candidate] = []
            if preset is not None:
                for agent in free:
                    if agent.agent_id not in job.avoid_agents:
                        profile = face.profile(preset, job, agent)
                        if profile is not None:
                            candidates.append((agent, profile))
            if preset is None or not candidates:
                waiting.append(face.waiting(job, f"{self.name}: no free agent can run it"))
                continue
            (agent, profile), reason = self.choose(preset, job, candidates)
            assignments.append(assign(preset, job, agent, profile, snapshot.now, reason))
            free.remove(agent)
        return Decisions(assignments=tuple(assignments), waiting=tuple(waiting))

    def choose(self, preset: ModelPreset, job: PendingJob, candidates: list[Candidate]) -> Choice:
        """The candidate that takes the job (candidates come in agent-id order), and the reason it gives."""
        raise NotImplementedError


def idle_agents(snapshot: Snapshot) -> list[AgentView]:
    """Idle agents in id order, so every baseline is deterministic."""
    return sorted((agent for agent in snapshot.agents if agent.idle), key=lambda agent: agent.agent_id)


def submit_order(job: PendingJob) -> tuple[float, str]:
    return (job.submitted_at, job.job_id)


def assign(
    preset: ModelPreset, job: PendingJob, agent: AgentView, profile: Profile, now: float, reason: str
) -> Assignment:
    """An assignment starting now, with scheduler.cost's rough finish estimate."""
    finish = now + job_seconds(preset, job.work, agent, profile)
    return Assignment(job.job_id, agent.agent_id, profile, now, finish, reason)


def _kind(agent: AgentView) -> _Kind:
    return (
        agent.gpu_name,
        agent.capability,
        agent.vram_total,
        agent.ram_total,
        agent.attention_modes,
        agent.plugins,
    )
