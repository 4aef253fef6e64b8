"""The job store: jobs and their events in one SQLite file (WAL, synchronous=FULL).

Each state-changing method is one short transaction, committed before it returns, so the
controller acts only on what is already durable. Transitions load the row, decide in Python and
write it back inside a `BEGIN IMMEDIATE` transaction, so a second process writing the same file
cannot interleave. Thread safety: one connection per store, guarded by a lock. SQLite serialises
writers anyway, so connections per thread would only add parallel reads, at the price of
connections that outlive their threads and that `close()` cannot reach.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from controller.jobs import IdempotencyKey, JobEvent, JobProgress, JobRecord, JobState, NewJob
from models.loras import LoraNeed
from models.overrides import Overrides, stored_overrides
from models.profiles import Profile
from models.step_cache import skip_from_json, skip_to_json
from models.work import WorkSize


class StoreError(Exception):
    """The store file cannot be used (a newer schema, not WAL-capable, or replaced under the store)."""


class InvalidJobError(ValueError):
    """A job of a batch broke a rule of the schema; the batch was not stored."""


class IdempotencyConflict(ValueError):
    """An idempotency key already used by its owner for a different request; nothing was stored."""


# A retried submission comes back within seconds or minutes; a key is kept a day, then forgotten.
IDEMPOTENCY_KEEP_S = 24 * 3600


@dataclasses.dataclass(frozen=True)
class QueuedJob:
    """A queued job read without its settings (a placement needs its work, not how it renders)."""

    job_id: str
    owner: str
    priority: int
    work: WorkSize
    created_at: float
    queued_since: float  # when it last entered the queue
    attempts: int
    avoid_agents: tuple[str, ...]
    wait_reason: str | None
    eta: float | None
    loras: tuple[LoraNeed, ...] = ()
    overrides: Overrides | None = None  # the profile / attention kernel its settings force


@dataclasses.dataclass(frozen=True)
class RunningAttempt:
    """A running job read without its settings: (job_id, attempt) names the attempt, so a reader
    can keep the full record it already has; cancel_requested and preempt_requested are the fields
    that change."""

    job_id: str
    attempt: int
    cancel_requested: bool
    preempt_requested: bool = False


@dataclasses.dataclass(frozen=True)
class PreemptRequest:
    """Stop a running attempt for `for_job_id`, for `request_preemptions`."""

    job_id: str
    attempt: int
    agent_id: str
    for_job_id: str
    reason: str


@dataclasses.dataclass(frozen=True)
class QueuedWait:
    """Why a queued job waits and when it should finish, for `set_waits`."""

    job_id: str
    attempts: int  # the stay in the queue it is about: written only while the job is on it
    reason: str | None
    eta: float | None
    # The first ETA a placement gave it, kept as its submit_eta unless one is stored already.
    first_eta: float | None = None


@dataclasses.dataclass(frozen=True)
class AttemptStart:
    """Run a queued job's next attempt on `agent_id`, for `start_attempts`."""

    job_id: str
    agent_id: str
    profile: Profile
    eta: float | None
    first_eta: float | None = None  # the first ETA a placement gave it, if before this start


@dataclasses.dataclass(frozen=True)
class QuarantineRow:
    """An agent kept from new work: why (kind, reason), since when, and its probe jobs so far."""

    agent_id: str
    node_id: str
    kind: str  # scheduler.quarantine.QuarantineKind, or "admin"
    reason: str
    since: float
    next_probe_at: float
    probes_failed: int = 0
    probe_job: str | None = None  # the probe job running on it, if any


@dataclasses.dataclass(frozen=True)
class ProgressUpdate:
    """An agent's latest progress of one attempt, for `record_progress_many`."""

    job_id: str
    attempt: int
    progress: JobProgress


_STATES = ", ".join(f"'{state.value}'" for state in JobState)
# What a queued job forces (models.overrides), read from its settings by SQLite: the rest of the
# settings are not parsed for a placement, and jobs stored before these keys existed read as none.
_OVERRIDES = (
    "json_extract(settings, '$.override_profile') AS override_profile,"
    " json_extract(settings, '$.override_attention') AS override_attention"
)

# Migration i takes the file from user_version i to i + 1; never edit one that has shipped.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        f"""CREATE TABLE jobs (
            id TEXT PRIMARY KEY NOT NULL,
            owner TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ({_STATES})),
            priority INTEGER NOT NULL CHECK (typeof(priority) = 'integer'),
            settings TEXT NOT NULL CHECK (json_valid(settings)),
            model_id TEXT NOT NULL,
            width INTEGER NOT NULL CHECK (typeof(width) = 'integer' AND width > 0),
            height INTEGER NOT NULL CHECK (typeof(height) = 'integer' AND height > 0),
            frames INTEGER NOT NULL CHECK (typeof(frames) = 'integer' AND frames > 0),
            steps INTEGER NOT NULL CHECK (typeof(steps) = 'integer' AND steps > 0),
            batch INTEGER NOT NULL CHECK (typeof(batch) = 'integer' AND batch > 0),
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
            max_attempts INTEGER NOT NULL CHECK (typeof(max_attempts) = 'integer' AND max_attempts > 0),
            agent_id TEXT,
            profile TEXT,
            started_at REAL,
            finished_at REAL,
            eta REAL,
            wait_reason TEXT,
            progress_step INTEGER NOT NULL DEFAULT 0,
            progress_total INTEGER NOT NULL DEFAULT 0,
            progress_phase TEXT NOT NULL DEFAULT '',
            progress_logged_at REAL,
            outputs TEXT NOT NULL DEFAULT '[]',
            error TEXT,
            attempt_errors TEXT NOT NULL DEFAULT '[]',
            avoid_agents TEXT NOT NULL DEFAULT '[]',
            cancel_requested INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX jobs_owner_id ON jobs (owner, id)",
        "CREATE INDEX jobs_owner_state_id ON jobs (owner, state, id)",
        "CREATE INDEX jobs_state_id ON jobs (state, id)",
        # The queue order (priority desc, creation asc) read straight off the index.
        "CREATE INDEX jobs_state_priority_id ON jobs (state, priority DESC, id)",
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id TEXT NOT NULL REFERENCES jobs (id),
            at REAL NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('state', 'progress', 'output', 'error')),
            data TEXT NOT NULL
        )""",
        "CREATE INDEX events_job_seq ON events (job_id, seq)",
        "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)",
    ),
    # Attempts lost to the farm's own restart: counted in `attempts`, not against `max_attempts`.
    (
        "ALTER TABLE jobs ADD COLUMN uncharged_attempts INTEGER NOT NULL DEFAULT 0 "
        "CHECK (uncharged_attempts >= 0)",
    ),
    (
        """CREATE TABLE idempotency_keys (
            owner TEXT NOT NULL,
            key TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            job_ids TEXT NOT NULL CHECK (json_valid(job_ids)),
            created_at REAL NOT NULL,
            PRIMARY KEY (owner, key)
        )""",
        "CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at)",
    ),
    # The LoRAs a job names, as the scheduler weighs them: [{"name", "sha256", "bytes"}, ...].
    ("ALTER TABLE jobs ADD COLUMN loras TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(loras))",),
    # The work's step skipping (WorkSize.step_skip): models.step_cache.skip_to_json, "null" for none.
    ("ALTER TABLE jobs ADD COLUMN step_skip TEXT NOT NULL DEFAULT 'null' CHECK (json_valid(step_skip))",),
    # The post-processors a job needs that do not ship with WanFarm (processing.plugins): a JSON list.
    ("ALTER TABLE jobs ADD COLUMN plugins TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(plugins))",),
    # Agents kept from new work (scheduler.quarantine) and the agents each job failed on.
    (
        """CREATE TABLE quarantine (
            agent_id TEXT PRIMARY KEY NOT NULL,
            node_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            reason TEXT NOT NULL,
            since REAL NOT NULL,
            probes_failed INTEGER NOT NULL DEFAULT 0,
            next_probe_at REAL NOT NULL,
            probe_job TEXT
        )""",
        """CREATE TABLE attempt_failures (
            job_id TEXT NOT NULL REFERENCES jobs (id),
            agent_id TEXT NOT NULL,
            PRIMARY KEY (job_id, agent_id)
        )""",
    ),
    # Preemption by priority (scheduler.preemption): how often a job was stopped for a higher one,
    # and whether its running attempt was asked to stop.
    (
        "ALTER TABLE jobs ADD COLUMN preemptions INTEGER NOT NULL DEFAULT 0 CHECK (preemptions >= 0)",
        "ALTER TABLE jobs ADD COLUMN preempt_requested INTEGER NOT NULL DEFAULT 0",
    ),
    # The first ETA a placement gave the job (its ETA at submit), kept while `eta` moves on; jobs
    # stored before it read as having none.
    ("ALTER TABLE jobs ADD COLUMN submit_eta REAL",),
)
SCHEMA_VERSION = len(_MIGRATIONS)

_INSERT_JOB = """INSERT INTO jobs (id, owner, state, priority, settings, model_id, width, height, frames,
    steps, batch, step_skip, created_at, updated_at, max_attempts, loras, plugins)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
_UPDATE_JOB = """UPDATE jobs SET state = ?, updated_at = ?, attempts = ?, agent_id = ?, profile = ?,
    started_at = ?, finished_at = ?, eta = ?, wait_reason = ?, progress_step = ?, progress_total = ?,
    progress_phase = ?, outputs = ?, error = ?, attempt_errors = ?, avoid_agents = ?,
    cancel_requested = ?, uncharged_attempts = ?, preemptions = ?, preempt_requested = ?, submit_eta = ?
    WHERE id = ?"""
_INSERT_EVENT = "INSERT INTO events (job_id, at, kind, data) VALUES (?, ?, ?, ?)"
_INSERT_KEY = (
    "INSERT INTO idempotency_keys (owner, key, fingerprint, job_ids, created_at) VALUES (?, ?, ?, ?, ?)"
)


class JobStore:
    """Jobs and their event log, persisted in one SQLite file that may be shared by processes."""

    def __init__(self, path: Path, busy_timeout_s: float = 10.0, progress_event_interval_s: float = 1.0):
        self.path = path
        self.progress_event_interval_s = progress_event_interval_s
        self._lock = threading.Lock()
        self._batch: tuple[int, sqlite3.Cursor] | None = None  # (thread, cursor) of an open batch
        self._additions: list[_Addition] = []  # add_jobs calls waiting for the lock
        self._additions_lock = threading.Lock()
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        self._conn.execute("PRAGMA foreign_keys = ON")
        mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            self._conn.close()
            raise StoreError(f"{path}: journal mode is {mode!r}, not 'wal'")
        self._conn.execute("PRAGMA synchronous = FULL")
        self._files: dict[Path, tuple[int, int]] = {}  # (st_dev, st_ino) of the files it opened
        try:
            self._migrate()  # a write, so the WAL file exists from here on
            self._files = {file: _identity(file) for file in (path, _wal_path(path))}
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def health(self) -> str | None:
        """None while the database and WAL files are the ones opened; else which one went and how.

        Closing any descriptor of jobs.db drops this process's locks, and another client closing
        then deletes the WAL: writes would go on into a deleted file and be lost at restart.
        """
        for file, opened in self._files.items():
            try:
                stat = os.stat(file)
            except FileNotFoundError:
                return f"{file} was deleted while the store had it open"
            if (stat.st_dev, stat.st_ino) != opened:
                return f"{file} was replaced by another file while the store had it open"
        return None

    # -- writes -------------------------------------------------------------------------------

    def add_jobs(
        self, jobs: Sequence[NewJob], now: float, idempotency: IdempotencyKey | None = None
    ) -> list[JobRecord]:
        """Store a batch as queued jobs, whole or not at all (InvalidJobError names the bad job).

        With a key its owner used before for the same request, store nothing and return that
        request's jobs as they are now; used for another request, raise IdempotencyConflict.
        Batches sent while another is being written are written together, in one commit.
        """
        addition = _Addition(
            jobs, [_dump_settings(job, index) for index, job in enumerate(jobs)], now, idempotency
        )
        if self._in_batch():
            self._add_group(self._batch_cursor(), [addition])
        else:
            with self._additions_lock:
                self._additions.append(addition)
            with self._lock:
                # Whoever holds the lock first writes every batch waiting by then: under concurrent
                # submissions one durable commit serves many requests instead of one each.
                if not addition.done:
                    with self._additions_lock:
                        group, self._additions = self._additions, []
                    self._commit_group(group)
        if addition.error is not None:
            raise addition.error
        assert addition.result is not None
        return addition.result

    def start_attempt(
        self, job_id: str, agent_id: str, profile: Profile, eta: float | None, now: float
    ) -> JobRecord | None:
        """queued -> running on `agent_id`; None (nothing changed) if the job is not queued."""
        with self._write() as cur:
            return _start_attempt(cur, AttemptStart(job_id, agent_id, profile, eta), now)

    def start_attempts(self, starts: Sequence[AttemptStart], now: float) -> list[JobRecord]:
        """`start_attempt` for many jobs in one transaction; the jobs started (those still queued)."""
        if not starts:
            return []
        with self._write() as cur:
            started = [_start_attempt(cur, start, now) for start in starts]
        return [job for job in started if job is not None]

    def record_progress(
        self, job_id: str, attempt: int, step: int, total: int, phase: str, now: float
    ) -> JobRecord | None:
        """Latest progress of the current attempt; None if the job or attempt is not running.

        The row always holds the latest step; the event log gets one progress event per
        `progress_event_interval_s`, plus every phase change and the last step.
        """
        with self._write() as cur:
            if not self._progress(cur, ProgressUpdate(job_id, attempt, JobProgress(step, total, phase)), now):
                return None
            return _load(cur, job_id)

    def record_progress_many(self, updates: Sequence[ProgressUpdate], now: float) -> None:
        """`record_progress` for many attempts in one transaction (one commit for a whole round)."""
        if not updates:
            return
        with self._write() as cur:
            for update in updates:
                self._progress(cur, update, now)

    def add_output(self, job_id: str, attempt: int, key: str, now: float) -> JobRecord | None:
        """Record an object-storage key of the current attempt, once per key."""
        with self._write() as cur:
            job = _current(cur, job_id, attempt)
            if job is None or key in job.outputs:
                return job
            job = dataclasses.replace(job, updated_at=now, outputs=(*job.outputs, key))
            _save(cur, job)
            _event(cur, job_id, now, "output", attempt=attempt, key=key)
            return job

    def finish(
        self, job_id: str, attempt: int, state: JobState, error: str | None, now: float
    ) -> JobRecord | None:
        """running -> succeeded/failed/canceled for the current attempt; None if that is not running."""
        if not state.finished:
            raise ValueError(f"finish() needs a finished state, not {state}")
        with self._write() as cur:
            job = _current(cur, job_id, attempt)
            if job is None:
                return None
            job = dataclasses.replace(
                job, state=state, updated_at=now, finished_at=now, eta=None, error=error
            )
            _save(cur, job)
            if error is not None:
                _event(cur, job_id, now, "error", attempt=attempt, error=error)
            _event(cur, job_id, now, "state", state=state, attempt=attempt, error=error)
            return job

    def requeue(
        self,
        job_id: str,
        attempt: int,
        agent_id: str,
        reason: str,
        now: float,
        charged: bool = True,
        avoid: bool | None = None,
    ) -> JobRecord | None:
        """The agent of the current attempt was lost: queue again, avoiding that agent.

        The last allowed charged attempt fails with every attempt's reason; a job whose cancel
        was requested is canceled instead. A loss not charged (the farm's own restart) neither
        counts against max_attempts nor avoids the agent, unless `avoid` says otherwise (an agent
        that refused the task). None if the attempt is not running.
        """
        avoid = charged if avoid is None else avoid
        with self._write() as cur:
            job = _current(cur, job_id, attempt)
            if job is None:
                return None
            line = f"attempt {attempt} on {agent_id}: {reason}" + ("" if charged else "; not charged")
            avoided = (
                job.avoid_agents
                if agent_id in job.avoid_agents or not avoid
                else (*job.avoid_agents, agent_id)
            )
            job = dataclasses.replace(
                job,
                updated_at=now,
                eta=None,
                attempt_errors=(*job.attempt_errors, line),
                avoid_agents=avoided,
                progress=JobProgress(),
                uncharged_attempts=job.uncharged_attempts + (0 if charged else 1),
            )
            if job.cancel_requested:
                job = dataclasses.replace(job, state=JobState.CANCELED, finished_at=now)
            elif job.charged_attempts >= job.max_attempts:
                error = f"failed after {job.charged_attempts} attempts: " + "; ".join(job.attempt_errors)
                job = dataclasses.replace(job, state=JobState.FAILED, finished_at=now, error=error)
            else:
                job = dataclasses.replace(job, state=JobState.QUEUED)
            _save(cur, job)
            _event(cur, job_id, now, "error", attempt=attempt, agent_id=agent_id, error=reason)
            _event(cur, job_id, now, "state", state=job.state, attempt=attempt, error=job.error)
            return job

    def request_preemptions(self, requests: Sequence[PreemptRequest], now: float) -> list[JobRecord]:
        """Mark each running attempt asked to stop for a job of a higher priority, in one
        transaction; the attempts marked (those still running and not marked already)."""
        if not requests:
            return []
        marked = []
        with self._write() as cur:
            for request in requests:
                job = _current(cur, request.job_id, request.attempt)
                if job is None or job.preempt_requested or job.cancel_requested:
                    continue
                job = dataclasses.replace(job, updated_at=now, preempt_requested=True)
                _save(cur, job)
                _event(
                    cur,
                    job.id,
                    now,
                    "state",
                    state=job.state,
                    attempt=request.attempt,
                    agent_id=request.agent_id,
                    preempt_requested=True,
                    for_job=request.for_job_id,
                    reason=request.reason,
                )
                marked.append(job)
        return marked

    def preempted(
        self,
        job_id: str,
        attempt: int,
        agent_id: str,
        step: int,
        total: int,
        now: float,
        drained: bool = False,
    ) -> JobRecord | None:
        """The attempt stopped at step `step` of `total` for a job of a higher priority (or because
        its agent is `drained`): queue the job again with that progress, not charged, its agent not
        avoided, its preemptions + 1 (not for a drain); a job whose cancel was requested is canceled
        instead. None if the attempt is not running."""
        with self._write() as cur:
            job = _current(cur, job_id, attempt)
            if job is None:
                return None
            why = "its agent was drained" if drained else "preempted"
            line = f"attempt {attempt} on {agent_id}: {why} at step {step}/{total}; not charged"
            job = _queued_again(
                job,
                line,
                now,
                progress=JobProgress(step, total, "preempted"),
                preemptions=job.preemptions + (0 if drained else 1),
                preempt_requested=False,
            )
            _save(cur, job)
            _event(
                cur, job_id, now, "state", state=job.state, attempt=attempt, agent_id=agent_id, preempted=True
            )
            return job

    def next_window(
        self, job_id: str, attempt: int, agent_id: str, done: int, windows: int, now: float
    ) -> JobRecord | None:
        """A long video's attempt stored its window (`done` of `windows`): queue the job for the
        next one, the attempt not charged (it succeeded); a job whose cancel was requested is
        canceled instead. None if the attempt is not running."""
        with self._write() as cur:
            job = _current(cur, job_id, attempt)
            if job is None:
                return None
            job = dataclasses.replace(
                job,
                updated_at=now,
                eta=None,
                progress=JobProgress(done, windows, "window"),
                uncharged_attempts=job.uncharged_attempts + 1,
                state=JobState.CANCELED if job.cancel_requested else JobState.QUEUED,
                finished_at=now if job.cancel_requested else None,
            )
            _save(cur, job)
            # A transition whose data says which window was stored, and by whom.
            _event(
                cur,
                job_id,
                now,
                "state",
                state=job.state,
                attempt=attempt,
                agent_id=agent_id,
                window=done,
                windows=windows,
            )
            return job

    def request_cancel(self, job_id: str, now: float) -> JobRecord | None:
        """Cancel a queued job at once, or mark a running one (finish(CANCELED) follows); None if unknown."""
        with self._write() as cur:
            job = _load(cur, job_id)
            if job is None or job.state.finished or job.cancel_requested:
                return job
            if job.state is JobState.QUEUED:
                job = dataclasses.replace(
                    job, state=JobState.CANCELED, updated_at=now, finished_at=now, eta=None, wait_reason=None
                )
            else:
                job = dataclasses.replace(job, updated_at=now, cancel_requested=True)
            _save(cur, job)
            _event(cur, job_id, now, "state", state=job.state, cancel_requested=True)
            return job

    def set_waits(self, waits: Sequence[QueuedWait]) -> None:
        """`set_wait` for many jobs in one transaction; a job no longer on that stay in the queue
        (started, canceled, or queued again since) is left alone. A job's first ETA is also kept
        as its `submit_eta`."""
        sql = (
            "UPDATE jobs SET wait_reason = ?, eta = ?, submit_eta = coalesce(submit_eta, ?)"
            " WHERE id = ? AND attempts = ? AND state = ?"
        )
        queued = JobState.QUEUED.value
        if waits:
            with self._write() as cur:
                rows = [(w.reason, w.eta, w.first_eta, w.job_id, w.attempts, queued) for w in waits]
                cur.executemany(sql, rows)

    def set_wait(self, job_id: str, reason: str | None, eta: float | None) -> JobRecord | None:
        """Why a queued job waits and when it should finish (the row only, no event); None if not queued."""
        with self._write() as cur:
            job = _load(cur, job_id)
            if job is None or job.state is not JobState.QUEUED:
                return None
            if (job.wait_reason, job.eta) != (reason, eta):
                first = eta if job.submit_eta is None else job.submit_eta
                sql = "UPDATE jobs SET wait_reason = ?, eta = ?, submit_eta = ? WHERE id = ?"
                cur.execute(sql, (reason, eta, first, job_id))
                job = dataclasses.replace(job, wait_reason=reason, eta=eta, submit_eta=first)
            return job

    # -- reads --------------------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord | None:
        with self._read() as cur:
            return _load(cur, job_id)

    def idempotent_jobs(self, owner: str, key: str) -> tuple[str, list[JobRecord]] | None:
        """(fingerprint, the jobs as they are now) of a submission made with `key`; None if unused."""
        with self._read() as cur:
            return _keyed_jobs(cur, owner, key)

    def list_jobs(
        self,
        owner: str | None = None,
        states: Collection[JobState] | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[JobRecord]:
        """Newest first, at most `limit`; pass the last id of a page as `before` for the next one."""
        rows: list[sqlite3.Row] = []
        with self._read() as cur:
            for sql, params in list_queries(owner, states, limit, before):
                rows += cur.execute(sql, params).fetchall()
        rows.sort(key=lambda row: str(row["id"]), reverse=True)
        return [_record(row) for row in rows[: max(limit, 0)]]

    def count_by_state(self, owner: str | None = None) -> dict[JobState, int]:
        """Jobs per state (every state present, zero included)."""
        where, params = ("WHERE owner = ?", (owner,)) if owner is not None else ("", ())
        with self._read() as cur:
            rows = cur.execute(f"SELECT state, count(*) FROM jobs {where} GROUP BY state", params).fetchall()
        counts = dict.fromkeys(JobState, 0)
        counts.update({JobState(state): n for state, n in rows})
        return counts

    def finished_per_minute(self, since: float, bucket_s: int = 60) -> dict[int, int]:
        """Jobs that succeeded or failed at or after `since`, counted per slot (epoch // bucket_s)."""
        sql = (
            "SELECT CAST(finished_at / ? AS INTEGER) AS slot, count(*) FROM jobs "
            "WHERE finished_at >= ? AND state IN (?, ?) GROUP BY slot"
        )
        params = (bucket_s, since, JobState.SUCCEEDED.value, JobState.FAILED.value)
        with self._read() as cur:
            return {int(slot): int(n) for slot, n in cur.execute(sql, params).fetchall()}

    def queued_counts(self) -> dict[tuple[int, str], int]:
        """Queued jobs per (priority, model), counted in SQL: a long queue is not loaded."""
        sql = "SELECT priority, model_id, count(*) FROM jobs WHERE state = ? GROUP BY priority, model_id"
        with self._read() as cur:
            rows = cur.execute(sql, (JobState.QUEUED.value,)).fetchall()
        return {(int(priority), str(model)): int(n) for priority, model, n in rows}

    def queued(self, limit: int | None = None) -> list[JobRecord]:
        """Queued jobs in queue order: priority descending, then oldest first; the first `limit`."""
        sql = "SELECT * FROM jobs WHERE state = ? ORDER BY priority DESC, id LIMIT ?"
        with self._read() as cur:
            rows = cur.execute(sql, (JobState.QUEUED.value, -1 if limit is None else limit))
            return [_record(row) for row in rows]

    def running(self) -> list[JobRecord]:
        sql = "SELECT * FROM jobs WHERE state = ? ORDER BY id"
        with self._read() as cur:
            return [_record(row) for row in cur.execute(sql, (JobState.RUNNING.value,))]

    def queue_ids(self, limit: int) -> list[str]:
        """The ids of the first `limit` queued jobs in queue order (read off the index alone)."""
        sql = "SELECT id FROM jobs WHERE state = ? ORDER BY priority DESC, id LIMIT ?"
        with self._read() as cur:
            return [row[0] for row in cur.execute(sql, (JobState.QUEUED.value, limit))]

    def running_attempts(self) -> list[RunningAttempt]:
        """Every running attempt, by job id, without settings."""
        sql = "SELECT id, attempts, cancel_requested, preempt_requested FROM jobs WHERE state = ? ORDER BY id"
        with self._read() as cur:
            rows = cur.execute(sql, (JobState.RUNNING.value,)).fetchall()
        return [RunningAttempt(row[0], row[1], bool(row[2]), bool(row[3])) for row in rows]

    def queued_jobs(self, job_ids: Sequence[str]) -> list[QueuedJob]:
        """The jobs among `job_ids` still queued, in one read, without parsing their settings."""
        sql = (
            "SELECT id, owner, priority, model_id, width, height, frames, steps, batch, step_skip,"
            " created_at, updated_at, attempts, avoid_agents, wait_reason, eta, loras, plugins,"
            f" {_OVERRIDES} FROM jobs"
            " WHERE id IN (SELECT value FROM json_each(?)) AND state = ?"
        )
        with self._read() as cur:
            rows = cur.execute(sql, (json.dumps(list(job_ids)), JobState.QUEUED.value)).fetchall()
        return [
            QueuedJob(
                job_id=row["id"],
                owner=row["owner"],
                priority=row["priority"],
                work=_work(row),
                created_at=row["created_at"],
                queued_since=row["updated_at"],
                attempts=row["attempts"],
                avoid_agents=tuple(json.loads(row["avoid_agents"])),
                wait_reason=row["wait_reason"],
                eta=row["eta"],
                loras=_loras(row["loras"]),
                overrides=stored_overrides(
                    row["override_profile"], row["override_attention"], json.loads(row["plugins"])
                ),
            )
            for row in rows
        ]

    def get_many(self, job_ids: Sequence[str]) -> list[JobRecord]:
        """The jobs among `job_ids` that exist, in one read."""
        sql = "SELECT * FROM jobs WHERE id IN (SELECT value FROM json_each(?))"
        with self._read() as cur:
            return [_record(row) for row in cur.execute(sql, (json.dumps(list(job_ids)),))]

    def state_events_since(self, seq: int, limit: int) -> list[JobEvent]:
        """The first `limit` state events (transitions, cancel requests) after event `seq`; reads
        only the events written since, so a poller pays for progress next to nothing."""
        sql = "SELECT * FROM events WHERE seq > ? AND kind = 'state' ORDER BY seq LIMIT ?"
        with self._read() as cur:
            return [_job_event(row) for row in cur.execute(sql, (seq, limit))]

    def events(self, job_id: str, after_seq: int = 0, limit: int = 1000) -> list[JobEvent]:
        """A job's events with seq > after_seq, oldest first."""
        sql = "SELECT * FROM events WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?"
        with self._read() as cur:
            rows = cur.execute(sql, (job_id, after_seq, limit)).fetchall()
        return [_job_event(row) for row in rows]

    def latest_seq(self) -> int:
        with self._read() as cur:
            return int(cur.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])

    # -- quarantine ---------------------------------------------------------------------------

    def retry_elsewhere(
        self, job_id: str, attempt: int, agent_id: str, error: str, now: float
    ) -> JobRecord | None:
        """A failed attempt blamed on its agent: queue again avoiding it, not charged, and note the
        agent among those the job failed on (a job whose cancel was requested is canceled instead).
        None if the attempt is not running."""
        with self._write() as cur:
            job = _current(cur, job_id, attempt)
            if job is None:
                return None
            line = f"attempt {attempt} on {agent_id}: {error}; retried elsewhere, not charged"
            avoid = job.avoid_agents if agent_id in job.avoid_agents else (*job.avoid_agents, agent_id)
            job = _queued_again(job, line, now, avoid_agents=avoid, progress=JobProgress())
            _save(cur, job)
            cur.execute("INSERT OR IGNORE INTO attempt_failures VALUES (?, ?)", (job_id, agent_id))
            _event(cur, job_id, now, "error", attempt=attempt, agent_id=agent_id, error=error)
            _event(cur, job_id, now, "state", state=job.state, attempt=attempt, error=job.error)
            return job

    def failed_agents(self, job_id: str) -> list[str]:
        """The agents an attempt of this job failed on and was retried elsewhere from."""
        with self._read() as cur:
            rows = cur.execute("SELECT agent_id FROM attempt_failures WHERE job_id = ?", (job_id,))
            return [row[0] for row in rows]

    def quarantines(self) -> list[QuarantineRow]:
        with self._read() as cur:
            rows = cur.execute("SELECT * FROM quarantine ORDER BY since, agent_id").fetchall()
        return [QuarantineRow(**dict(row)) for row in rows]

    def put_quarantine(self, row: QuarantineRow) -> None:
        """Write (or overwrite) an agent's quarantine."""
        fields = dataclasses.astuple(row)
        with self._write() as cur:
            cur.execute(
                "INSERT OR REPLACE INTO quarantine (agent_id, node_id, kind, reason, since,"
                " next_probe_at, probes_failed, probe_job) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                fields,
            )

    def release_quarantine(self, agent_id: str) -> bool:
        """End an agent's quarantine; whether it had one."""
        with self._write() as cur:
            return cur.execute("DELETE FROM quarantine WHERE agent_id = ?", (agent_id,)).rowcount > 0

    # -- helpers ------------------------------------------------------------------------------

    def _progress(self, cur: sqlite3.Cursor, update: ProgressUpdate, now: float) -> bool:
        """Write one attempt's progress; False if that attempt is not running. Only the progress
        columns are read and written: a round may carry one update per agent."""
        sql = "SELECT state, attempts, progress_phase, progress_logged_at FROM jobs WHERE id = ?"
        row = cur.execute(sql, (update.job_id,)).fetchone()
        if row is None or row["state"] != JobState.RUNNING.value or row["attempts"] != update.attempt:
            return False
        step, total, phase = update.progress.step, update.progress.total, update.progress.phase
        logged_at = row["progress_logged_at"]
        log = (
            logged_at is None
            or now - logged_at >= self.progress_event_interval_s
            or phase != row["progress_phase"]
            or step >= total
        )
        columns = "updated_at = ?, progress_step = ?, progress_total = ?, progress_phase = ?"
        values: list[Any] = [now, step, total, phase]
        if log:
            columns, values = f"{columns}, progress_logged_at = ?", [*values, now]
        cur.execute(f"UPDATE jobs SET {columns} WHERE id = ?", (*values, update.job_id))
        if log:
            _event(
                cur,
                update.job_id,
                now,
                "progress",
                attempt=update.attempt,
                step=step,
                total=total,
                phase=phase,
            )
        return True

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Every write (and read) of this thread inside is one transaction: one durable commit for
        a round's many ends and outputs, not one each. Other threads wait for the whole batch."""
        with self._write() as cur:
            self._batch = (threading.get_ident(), cur)
            try:
                yield
            finally:
                self._batch = None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        """One transaction holding the write lock from its start; committed (durably) on exit."""
        if self._in_batch():
            yield self._batch_cursor()  # inside this thread's batch: its transaction commits it
            return
        with self._lock, self._transaction() as cur:
            yield cur

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        # The caller holds the lock.
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
            self._check_files()
            cur.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                cur.execute("ROLLBACK")
            raise

    def _in_batch(self) -> bool:
        return self._batch is not None and self._batch[0] == threading.get_ident()

    def _batch_cursor(self) -> sqlite3.Cursor:
        assert self._batch is not None
        return self._batch[1]

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Cursor]:
        """One read transaction, so a multi-query read sees one snapshot."""
        if self._in_batch():
            yield self._batch_cursor()
            return
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN")
            try:
                yield cur
            finally:
                cur.execute("COMMIT")

    def _check_files(self) -> None:
        problem = self.health()
        if problem is not None:
            raise StoreError(f"{problem}; writes are refused until the controller restarts")

    def _migrate(self) -> None:
        with self._write() as cur:
            version = int(cur.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path}: schema version {version} is newer than {SCHEMA_VERSION}")
            for statements in _MIGRATIONS[version:]:
                for statement in statements:
                    cur.execute(statement)
            cur.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @staticmethod
    def _new_ids(cur: sqlite3.Cursor, count: int, now: float) -> list[str]:
        """Ids `{ms:012x}{random:04x}`, each above every id issued before, even if the clock steps back."""
        row = cur.execute("SELECT value FROM meta WHERE key = 'last_job_id'").fetchone()
        last = int(row[0], 16) if row else -1
        ms = max(int(now * 1000), 0)
        ids = []
        for _ in range(count):
            last = max((ms << 16) | secrets.randbits(16), last + 1)
            ids.append(f"{last:016x}")
        if ids:
            cur.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_job_id', ?)", (ids[-1],))
        return ids

    def _commit_group(self, group: list[_Addition]) -> None:
        """Write these batches in one transaction (the store lock held); each gets its result or error."""
        try:
            with self._transaction() as cur:
                self._add_group(cur, group)
        except BaseException as error:
            for addition in group:  # nothing of the group was committed
                addition.result, addition.error = None, error
            raise
        finally:
            for addition in group:
                addition.done = True

    def _add_group(self, cur: sqlite3.Cursor, group: list[_Addition]) -> None:
        # A batch refused (a bad job, a reused key) rolls back to its savepoint alone.
        cur.execute("DELETE FROM idempotency_keys WHERE created_at < ?", (group[0].now - IDEMPOTENCY_KEEP_S,))
        for addition in group:
            cur.execute("SAVEPOINT addition")
            try:
                addition.result = self._add(cur, addition)
            except (InvalidJobError, IdempotencyConflict) as error:
                cur.execute("ROLLBACK TO addition")
                addition.error = error
            cur.execute("RELEASE addition")

    def _add(self, cur: sqlite3.Cursor, addition: _Addition) -> list[JobRecord]:
        jobs, settings, now, idempotency = (
            addition.jobs,
            addition.settings,
            addition.now,
            addition.idempotency,
        )
        if idempotency is not None and (replayed := _replay(cur, idempotency)) is not None:
            return replayed
        ids = self._new_ids(cur, len(jobs), now)
        for index, row in enumerate(zip(ids, jobs, settings, strict=True)):
            try:
                cur.execute(_INSERT_JOB, _insert_row(*row, now))
            except sqlite3.IntegrityError as err:
                raise InvalidJobError(f"job {index}: {err}; batch rejected, nothing stored") from err
        queued_event = json.dumps({"state": JobState.QUEUED.value})
        cur.executemany(_INSERT_EVENT, [(i, now, "state", queued_event) for i in ids])
        if idempotency is not None:
            key = idempotency
            cur.execute(_INSERT_KEY, (key.owner, key.key, key.fingerprint, json.dumps(ids), now))
        return [_new_record(i, j, s, now) for i, j, s in zip(ids, jobs, settings, strict=True)]


@dataclasses.dataclass
class _Addition:
    """One add_jobs call, waiting to be written with the others that arrived meanwhile."""

    jobs: Sequence[NewJob]
    settings: list[str]
    now: float
    idempotency: IdempotencyKey | None
    result: list[JobRecord] | None = None
    error: BaseException | None = None
    done: bool = False


def _wal_path(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def _identity(file: Path) -> tuple[int, int]:
    try:
        stat = os.stat(file)
    except FileNotFoundError:
        raise StoreError(f"{file} is missing right after opening the store") from None
    return stat.st_dev, stat.st_ino


def list_queries(
    owner: str | None, states: Collection[JobState] | None, limit: int, before: str | None
) -> list[tuple[str, tuple[Any, ...]]]:
    """The index-ordered queries behind list_jobs: one per state, so each reads at most `limit` rows."""
    state_values: list[str | None] = [None]
    if states is not None:
        state_values = [state.value for state in sorted(set(states))]
    queries = []
    for state in state_values:
        where, params = [], []
        for column, value in (("owner", owner), ("state", state)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if before is not None:
            where.append("id < ?")
            params.append(before)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        queries.append((f"SELECT * FROM jobs {clause} ORDER BY id DESC LIMIT ?", (*params, max(limit, 0))))
    return queries


def _dump_settings(job: NewJob, index: int) -> str:
    try:
        return json.dumps(job.settings, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise InvalidJobError(f"job {index}: settings are not plain JSON ({err}); nothing stored") from err


def _insert_row(job_id: str, job: NewJob, settings: str, now: float) -> tuple[Any, ...]:
    fixed = (job_id, job.owner, JobState.QUEUED.value, job.priority, settings)
    loras = _dump_loras(job.loras)
    return (*fixed, *_work_columns(job.work), now, now, job.max_attempts, loras, json.dumps(job.plugins))


def _dump_loras(loras: tuple[LoraNeed, ...]) -> str:
    return json.dumps([{"name": n.name, "sha256": n.sha256, "bytes": n.bytes} for n in loras])


def _loras(text: str) -> tuple[LoraNeed, ...]:
    return tuple(LoraNeed(item["name"], item["sha256"], item["bytes"]) for item in json.loads(text))


def _work_columns(work: WorkSize) -> tuple[str, int, int, int, int, int, str]:
    # The order of _INSERT_JOB's columns model_id ... step_skip.
    size = (work.model_id, work.width, work.height, work.frames, work.steps, work.batch)
    return (*size, skip_to_json(work.step_skip))


def _work(row: sqlite3.Row) -> WorkSize:
    size = (row["model_id"], row["width"], row["height"], row["frames"], row["steps"], row["batch"])
    return WorkSize(*size, skip_from_json(row["step_skip"]))


def _new_record(job_id: str, job: NewJob, settings: str, now: float) -> JobRecord:
    """The record as stored: settings decoded from what was written, as get() would return them."""
    return JobRecord(
        id=job_id,
        owner=job.owner,
        state=JobState.QUEUED,
        priority=job.priority,
        settings=json.loads(settings),
        work=job.work,
        created_at=now,
        updated_at=now,
        attempts=0,
        max_attempts=job.max_attempts,
        plugins=job.plugins,
    )


def _replay(cur: sqlite3.Cursor, idempotency: IdempotencyKey) -> list[JobRecord] | None:
    """The jobs a key already stored, if it was used for the same request; None if unused."""
    found = _keyed_jobs(cur, idempotency.owner, idempotency.key)
    if found is None:
        return None
    fingerprint, jobs = found
    if fingerprint != idempotency.fingerprint:
        raise IdempotencyConflict(
            f"idempotency key {idempotency.key!r} was already used for a different request; nothing stored"
        )
    return jobs


def _keyed_jobs(cur: sqlite3.Cursor, owner: str, key: str) -> tuple[str, list[JobRecord]] | None:
    sql = "SELECT fingerprint, job_ids FROM idempotency_keys WHERE owner = ? AND key = ?"
    row = cur.execute(sql, (owner, key)).fetchone()
    if row is None:
        return None
    sql = "SELECT * FROM jobs WHERE id IN (SELECT value FROM json_each(?))"
    by_id = {job.id: job for job in map(_record, cur.execute(sql, (row["job_ids"],)))}
    return row["fingerprint"], [by_id[job_id] for job_id in json.loads(row["job_ids"])]


def _job_event(row: sqlite3.Row) -> JobEvent:
    return JobEvent(row["job_id"], row["seq"], row["at"], row["kind"], json.loads(row["data"]))


def _start_attempt(cur: sqlite3.Cursor, start: AttemptStart, now: float) -> JobRecord | None:
    job = _load(cur, start.job_id)
    if job is None or job.state is not JobState.QUEUED:
        return None
    job = dataclasses.replace(
        job,
        state=JobState.RUNNING,
        updated_at=now,
        attempts=job.attempts + 1,
        agent_id=start.agent_id,
        profile=start.profile,
        started_at=now,
        eta=start.eta,
        submit_eta=_first(job.submit_eta, start.first_eta, start.eta),
        wait_reason=None,
        progress=JobProgress(),
        preempt_requested=False,
    )
    _save(cur, job)
    cur.execute("UPDATE jobs SET progress_logged_at = NULL WHERE id = ?", (job.id,))
    details = {"attempt": job.attempts, "agent_id": start.agent_id, "profile": start.profile.value}
    _event(cur, job.id, now, "state", state=job.state, **details)
    return job


def _first(*etas: float | None) -> float | None:
    return next((eta for eta in etas if eta is not None), None)


def _load(cur: sqlite3.Cursor, job_id: str) -> JobRecord | None:
    row = cur.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return None if row is None else _record(row)


def _current(cur: sqlite3.Cursor, job_id: str, attempt: int) -> JobRecord | None:
    """The job if it is running `attempt`; events of older attempts find None."""
    job = _load(cur, job_id)
    if job is None or job.state is not JobState.RUNNING or job.attempts != attempt:
        return None
    return job


def _save(cur: sqlite3.Cursor, job: JobRecord) -> None:
    """Write every mutable column of `job` (the immutable ones were fixed at insert)."""
    cur.execute(
        _UPDATE_JOB,
        (
            job.state.value,
            job.updated_at,
            job.attempts,
            job.agent_id,
            None if job.profile is None else job.profile.value,
            job.started_at,
            job.finished_at,
            job.eta,
            job.wait_reason,
            job.progress.step,
            job.progress.total,
            job.progress.phase,
            json.dumps(job.outputs),
            job.error,
            json.dumps(job.attempt_errors),
            json.dumps(job.avoid_agents),
            int(job.cancel_requested),
            job.uncharged_attempts,
            job.preemptions,
            int(job.preempt_requested),
            job.submit_eta,
            job.id,
        ),
    )


def _event(cur: sqlite3.Cursor, job_id: str, at: float, kind: str, **data: Any) -> None:
    cur.execute(_INSERT_EVENT, (job_id, at, kind, json.dumps(data)))


def _record(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"],
        owner=row["owner"],
        state=JobState(row["state"]),
        priority=row["priority"],
        settings=json.loads(row["settings"]),
        work=_work(row),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        agent_id=row["agent_id"],
        profile=None if row["profile"] is None else Profile(row["profile"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        eta=row["eta"],
        wait_reason=row["wait_reason"],
        progress=JobProgress(row["progress_step"], row["progress_total"], row["progress_phase"]),
        outputs=tuple(json.loads(row["outputs"])),
        error=row["error"],
        attempt_errors=tuple(json.loads(row["attempt_errors"])),
        avoid_agents=tuple(json.loads(row["avoid_agents"])),
        cancel_requested=bool(row["cancel_requested"]),
        uncharged_attempts=row["uncharged_attempts"],
        plugins=tuple(json.loads(row["plugins"])),
        preemptions=row["preemptions"],
        preempt_requested=bool(row["preempt_requested"]),
        submit_eta=row["submit_eta"],
    )


def _queued_again(job: JobRecord, line: str, now: float, **changes: Any) -> JobRecord:
    """An attempt that ended without charging its job (preempted, retried elsewhere): queued again
    with `line` among its attempt errors, or canceled when a cancel was requested meanwhile."""
    return dataclasses.replace(
        job,
        state=JobState.CANCELED if job.cancel_requested else JobState.QUEUED,
        finished_at=now if job.cancel_requested else None,
        updated_at=now,
        eta=None,
        attempt_errors=(*job.attempt_errors, line),
        uncharged_attempts=job.uncharged_attempts + 1,
        **changes,
    )
