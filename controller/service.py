"""What the API does: validate submissions, fix their seeds, refuse what no agent can ever run,
store them, and answer for jobs within what the caller may see. Routers stay thin over this."""

from __future__ import annotations

import hashlib
import json
import secrets
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from controller import loras, uploads
from controller.auth import Principal
from controller.jobs import IdempotencyKey, JobEvent, JobRecord, JobState, NewJob
from controller.metrics import FarmMetrics
from controller.schemas import StatsOut
from controller.service_error import ServiceError
from controller.stats import window_stats
from controller.store import IdempotencyConflict, InvalidJobError, JobStore
from controller.utilisation import UtilisationLog
from gpu_agent.lora_fetch import StoredLora
from gpu_agent.storage import ObjectStore
from models.attachments import Attachments
from models.loras import LoraNeed, LoraRequest, file_sha256
from models.prompts import PromptError, expand_prompts
from models.settings import MAX_SEED, Job, SettingsError, parse_settings, resolve
from processing.queue_zip import QueueZipError, import_queue_zip
from scheduler.feasibility import pool_refusal
from scheduler.snapshot import AgentView

MAX_BATCH = 1000
# What an Idempotency-Key may hold: it is stored with the jobs and echoed in errors.
MAX_IDEMPOTENCY_KEY_CHARS = 255
KEY_REUSED = "Idempotency-Key reused with a different request"


@dataclass(frozen=True)
class Submitted:
    jobs: list[JobRecord]
    warnings: list[str]
    replayed: bool = False  # the jobs of an earlier request with the same Idempotency-Key


class FarmService:
    def __init__(
        self,
        store: JobStore,
        storage: ObjectStore,
        pool: Callable[[], list[AgentView]],
        clock: Callable[[], float],
        metrics: FarmMetrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics or FarmMetrics()
        self.storage = storage
        self.pool = pool
        self.clock = clock

    def submit(
        self,
        who: Principal,
        items: Sequence[object],
        priority: int = 50,
        wait_for_capacity: bool = False,
        idempotency_key: str | None = None,
    ) -> Submitted:
        """Validate every item, then store them all or none. Settings sent as JSON name no files:
        attachments come in a queue.zip. A repeated Idempotency-Key returns the first jobs."""
        request = {"items": list(items), "priority": priority, "wait_for_capacity": wait_for_capacity}
        # The items as sent (before seeds are fixed), so a retry of the same body matches.
        key = self._idempotency(who, idempotency_key, lambda: _digest(json.dumps(request, sort_keys=True)))
        if replay := self._replay(key):
            return replay
        return self._submit(who, items, priority, wait_for_capacity, Attachments.refused(), key)

    def submit_queue(
        self,
        who: Principal,
        archive: Path,
        priority: int,
        wait_for_capacity: bool,
        idempotency_key: str | None = None,
    ) -> Submitted:
        """A WanGP queue.zip: its entries with their attachments (only files it carries), as one batch."""
        options = json.dumps({"priority": priority, "wait_for_capacity": wait_for_capacity})
        key = self._idempotency(who, idempotency_key, lambda: _digest(file_sha256(archive) + options))
        if replay := self._replay(key):
            return replay
        with tempfile.TemporaryDirectory(prefix="wanfarm-queue-") as work:
            files = Path(work) / "files"
            try:
                entries = import_queue_zip(archive, files)
            except QueueZipError as error:
                raise ServiceError(422, "invalid queue.zip", [str(error)]) from None
            params = [entry.params for entry in entries]
            carried = {name: path for entry in entries for name, path in entry.loras.items()}
            attachments = Attachments.inside(files)
            return self._submit(who, params, priority, wait_for_capacity, attachments, key, carried)

    def get(self, who: Principal, job_id: str) -> JobRecord:
        job = self.store.get(job_id)
        if job is None or not who.may_see(job.owner):
            # Another owner's job answers as absent: its existence is not theirs to learn.
            raise ServiceError(404, f"no job {job_id!r}")
        return job

    def list_jobs(
        self, who: Principal, states: list[JobState] | None, limit: int, before: str | None
    ) -> list[JobRecord]:
        owner = None if who.admin else who.owner
        return self.store.list_jobs(owner=owner, states=states, limit=limit, before=before)

    def cancel(self, who: Principal, job_id: str) -> JobRecord:
        self.get(who, job_id)
        job = self.store.request_cancel(job_id, self.clock())
        if job is None:
            raise ServiceError(404, f"no job {job_id!r}")
        return job

    def output_path(self, who: Principal, job_id: str, name: str) -> Path:
        """The local file of one of the job's outputs; 404 when it has none of that name here."""
        job = self.get(who, job_id)
        key = next((k for k in job.outputs if PurePosixPath(k).name == name), None)
        path = self.storage.local_path(key) if key else None
        if path is None or not path.is_file():
            raise ServiceError(404, f"job {job_id} has no output {name!r}")
        return path

    def history(self, job_id: str, after_seq: int) -> tuple[list[JobEvent], JobRecord | None]:
        """The job's events after `after_seq`, then the job as it stands (None once it is gone)."""
        return self.store.events(job_id, after_seq), self.store.get(job_id)

    def health(self) -> str | None:
        """Why the farm cannot accept jobs now (its store refuses writes), or None."""
        return self.store.health()  # two stat calls: cheap enough for every probe

    def stats(self, window_s: int, now: float, utilisation: UtilisationLog | None) -> StatsOut:
        """Jobs finished and agents busy per minute over the `window_s` seconds up to `now`."""
        return window_stats(self.store, utilisation, window_s, now)

    def _submit(
        self,
        who: Principal,
        items: Sequence[object],
        priority: int,
        wait_for_capacity: bool,
        attachments: Attachments,
        idempotency: IdempotencyKey | None,
        carried: Mapping[str, Path] | None = None,
    ) -> Submitted:
        """`carried`: the LoRA files of a queue.zip (None for settings sent as JSON): stored as
        uploads with the jobs. LoRAs found nowhere are refused, whichever way the settings came."""
        if not items:
            raise ServiceError(422, "no settings given", hint="send a settings object or a non-empty list")
        if len(items) > MAX_BATCH:
            raise ServiceError(413, f"a batch holds at most {MAX_BATCH} settings, got {len(items)}")
        jobs, problems, warnings = self._validate(items, attachments)
        if problems:
            raise ServiceError(422, "invalid settings", problems, "fix the named keys and submit again")
        if not wait_for_capacity:
            self._refuse_impossible(jobs)
        named = any(job.generations[0].request.loras for job in jobs)
        listed = loras.list_loras(self.storage) if named else []
        if named:
            self._refuse_missing_loras(jobs, carried, listed)
        uploaded: list[str] = []
        stored_loras = loras.store_carried(self.storage, carried or {}, self.clock())
        try:
            needs = [loras.lora_needs(_named(job), stored_loras, listed) for job in jobs]
            new = [self._new_job(who, job, priority, uploaded, n) for job, n in zip(jobs, needs, strict=True)]
            stored = self.store.add_jobs(new, self.clock(), idempotency)
        except InvalidJobError as error:
            uploads.forget(self.storage, uploaded)
            loras.forget(self.storage, stored_loras)
            raise ServiceError(422, "invalid settings", [str(error)]) from None
        except IdempotencyConflict:
            uploads.forget(self.storage, uploaded)
            loras.forget(self.storage, stored_loras)
            raise _key_reused() from None
        except Exception:
            uploads.forget(self.storage, uploaded)
            loras.forget(self.storage, stored_loras)
            raise
        # The same key committed by a concurrent request first: the store answered its jobs.
        if [job.settings for job in stored] != [job.settings for job in new]:
            uploads.forget(self.storage, uploaded)
            return Submitted(stored, [], replayed=True)
        for record in stored:
            self.metrics.jobs_submitted.labels(record.model_id).inc()
        return Submitted(stored, warnings)

    def _idempotency(
        self, who: Principal, key: str | None, fingerprint: Callable[[], str]
    ) -> IdempotencyKey | None:
        """The key with the request's digest (computed only when a key was sent)."""
        if key is None:
            return None
        if not 0 < len(key) <= MAX_IDEMPOTENCY_KEY_CHARS or not key.isascii() or not key.isprintable():
            raise ServiceError(
                422,
                "invalid Idempotency-Key",
                [f"the key must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII characters"],
                "send a fresh random key (a UUID) with each new request",
            )
        return IdempotencyKey(who.owner, key, fingerprint())

    def _replay(self, key: IdempotencyKey | None) -> Submitted | None:
        """The first answer to a repeated request: nothing is validated, uploaded or stored again."""
        if key is None:
            return None
        found = self.store.idempotent_jobs(key.owner, key.key)
        if found is None:
            return None
        fingerprint, jobs = found
        if fingerprint != key.fingerprint:
            raise _key_reused()
        return Submitted(jobs, [], replayed=True)

    def _validate(
        self, items: Sequence[object], attachments: Attachments
    ) -> tuple[list[Job], list[str], list[str]]:
        jobs: list[Job] = []
        problems: list[str] = []
        warnings: list[str] = []
        for unit in _one_per_prompt(items, problems):
            try:
                # Seeds are fixed per prompt: each line of a random-seed (-1) prompt draws its own.
                job = resolve(parse_settings(_with_fixed_seed(unit.settings)), attachments, unit.where)
            except SettingsError as error:
                problems.extend(f"{unit.where}: {p}" for p in error.problems)
                continue
            jobs.append(job)
            warnings.extend(f"{unit.where}: {w}" for w in job.warnings)
        return jobs, problems, warnings

    def _refuse_impossible(self, jobs: list[Job]) -> None:
        agents = self.pool()
        if not agents:
            return  # a farm still starting has no agents yet: its jobs wait for them
        reasons = []
        for job in jobs:
            reason = pool_refusal(job.preset, job.work, agents, job.overrides)
            if reason:
                reasons.append(reason)
        if reasons:
            raise ServiceError(
                409,
                "no agent in the pool can run this",
                reasons,
                'submit with "wait_for_capacity": true to queue it until such a GPU joins',
            )

    def _refuse_missing_loras(
        self, jobs: list[Job], carried: Mapping[str, Path] | None, listed: list[StoredLora]
    ) -> None:
        """422 naming each LoRA of `jobs` that no source holds; `carried`: a queue.zip's files (None:
        settings sent as JSON, which carry none)."""
        agents = self.pool()
        if not agents:
            # A farm still starting cannot be asked what its agents' LoRA folders hold: a queue.zip
            # or JSON job naming one of them is accepted and waits for the agents.
            return
        held = {key.partition("@")[0] for agent in agents for key in agent.loras}
        found_nowhere = (loras.found_nowhere(_named(job), carried or {}, listed, held) for job in jobs)
        missing = dict.fromkeys(name for names in found_nowhere for name in names)  # once each, in order
        if missing:
            zipped = carried is not None
            raise ServiceError(
                422,
                "LoRAs found nowhere",
                [
                    f"activated_loras: {name!r} is {'not in the queue.zip, ' if zipped else ''}not uploaded, "
                    "not a Hugging Face URL, and no agent's LoRA folder or cache holds it"
                    for name in missing
                ],
                ("add the .safetensors file to the queue.zip, " if zipped else "")
                + "upload it (POST /v1/loras), or name it by its Hugging Face URL",
            )

    def _new_job(
        self, who: Principal, job: Job, priority: int, uploaded: list[str], needs: tuple[LoraNeed, ...]
    ) -> NewJob:
        settings = job.settings.as_dict()
        first = job.generations[0].request
        # Every image the job reads travels as an upload: the agent fetches each reference
        # (processing.queue_zip.ATTACHMENT_KEYS) and finds no other file.
        files: tuple[tuple[str, Path | None], ...] = (
            ("image_start", first.image_start),
            ("image_end", first.image_end),
            ("video_guide", first.video_guide),
            ("video_mask", first.video_mask),
            ("image_guide", first.image_guide),
        )
        for key, path in files:
            if path is not None:
                settings[key] = uploads.upload(self.storage, path, self.clock())
                uploaded.append(settings[key])
        if first.image_guide is None:
            # A control image given without V in video_prompt_type is not read (as in WanGP): not sent.
            settings.pop("image_guide", None)
        if first.image_refs:
            settings["image_refs"] = [uploads.upload(self.storage, p, self.clock()) for p in first.image_refs]
            uploaded.extend(settings["image_refs"])
        needs_plugins = tuple(sorted(job.overrides.plugins)) if job.overrides is not None else ()
        return NewJob(
            owner=who.owner,
            priority=priority,
            settings=settings,
            work=job.work,
            loras=needs,
            plugins=needs_plugins,
        )


@dataclass(frozen=True)
class _PromptUnit:
    where: str  # "settings", "settings[2]", "settings[2] (prompt 1 of 3)"
    settings: object


def _one_per_prompt(items: Sequence[object], problems: list[str]) -> list[_PromptUnit]:
    """Each item once per prompt its prompt holds (WanGP's multi_prompts_gen_type); a refused
    prompt or mode is a problem of its item. More jobs than MAX_BATCH are refused as a batch is."""
    units: list[_PromptUnit] = []
    for index, item in enumerate(items):
        where = f"settings[{index}]" if len(items) > 1 else "settings"
        try:
            expanded = expand_prompts(item, MAX_BATCH) if isinstance(item, Mapping) else [item]
        except PromptError as error:
            problems.append(f"{where}: {error}")
            continue
        if len(expanded) == 1:
            units.append(_PromptUnit(where, expanded[0]))
        else:
            count = len(expanded)
            units += [_PromptUnit(f"{where} (prompt {n} of {count})", s) for n, s in enumerate(expanded, 1)]
        if len(units) > MAX_BATCH:
            raise ServiceError(
                413,
                f"a batch makes at most {MAX_BATCH} jobs; the lines of these prompts make more",
                hint="split the settings or their prompt lines over several submissions",
            )
    return units


def _named(job: Job) -> tuple[LoraRequest, ...]:
    return job.generations[0].request.loras


def _key_reused() -> ServiceError:
    return ServiceError(
        422, KEY_REUSED, hint="send a new Idempotency-Key with each new request; reuse one only to retry"
    )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _with_fixed_seed(item: object) -> object:
    # A random seed (-1, or none given) is drawn once, at submit: every attempt of the job then
    # renders the same frames into the same output keys, and the stored settings reproduce it.
    if isinstance(item, dict) and item.get("seed", -1) == -1:
        return {**item, "seed": secrets.randbelow(MAX_SEED + 1)}
    return item
