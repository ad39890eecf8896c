"""Resumable training: checkpoints stream to GCS while the fine-tune step trains.

Why: the machine is temporary (Spot preemption, a crash, Vertex restarting the worker), GCS is
permanent. HF Trainer already writes everything a resume needs into `checkpoint-N/` (adapter,
optimizer, scheduler, RNG states, trainer_state with the step and data position) and skips the
consumed batches on `resume_from_checkpoint`. This module adds what a machine that can vanish
needs on top:

- `CheckpointCallback` uploads each saved checkpoint to
  `<checkpoint_uri>/<run>/fine-tune/checkpoints/step-NNNNNN/`, files first and a manifest
  (`COMPLETE.json`: file sizes and CRC32Cs) last with `if_generation_match=0`, so a kill in the
  middle of an upload leaves a folder no resume trusts. It also asks for a save every
  `save_minutes`, keeps the newest `save_total_limit` and uploads the step's log each time.
- `CheckpointStore.prepare_resume` picks the newest checkpoint whose manifest matches what is in
  the bucket, skips (with a warning) and removes newer incomplete or corrupt ones, and downloads
  it for the Trainer.
- Permanent GCS errors (no bucket, no permission) stop the step in `check_access`, before the
  model loads; transient ones are retried by google-cloud-storage's own policy (`storage.py`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.common import storage
from components.common.config import TrackingConfig, TrainConfig
from components.common.errors import InputError

__all__ = ["newest_complete"]  # what the CLI may use; the step uses the rest
log = logging.getLogger(__name__)

MARKER = "COMPLETE.json"
STEP_DIR = re.compile(r"^step-(\d{6,})$")
# Fields that change neither the data order nor the optimisation: a resume may change them.
RESUME_NEUTRAL_FIELDS = ("checkpoint_uri", "save_steps", "save_minutes", "save_total_limit",
                         "logging_steps", "eval_steps", "run_name", *TrackingConfig.model_fields)


def step_name(step: int) -> str:
    return f"step-{step:06d}"


def task_prefix(checkpoint_uri: str, run_name: str) -> str:
    """`gs://b/root` + `run` -> `gs://b/root/run/fine-tune`: unique per pipeline run and task."""
    if not re.fullmatch(r"[A-Za-z0-9._-]+", run_name or ""):
        raise InputError(
            f"run name {run_name!r} cannot name a checkpoint folder; use letters, digits, . _ -"
        )
    return f"{checkpoint_uri.rstrip('/')}/{run_name}/fine-tune"


def fingerprint(cfg: TrainConfig, train_rows: list[dict[str, Any]], world_size: int = 1) -> str:
    """What a checkpoint may only be resumed with: the same training data and training config,
    and the same number of processes (each rank's RNG state and data slice are in the
    checkpoint; another world size would replay other batches)."""
    from components.common.modeling import model_identity

    settings = cfg.model_dump(exclude={*RESUME_NEUTRAL_FIELDS, "num_processes"})
    # The weights' identity, not the folder they were fetched to (a new one per pipeline job).
    settings["base_model"] = model_identity(cfg.base_model)
    # Fields added with several GPUs and QLoRA count only when set, so a checkpoint written
    # before them still resumes; the world size itself stands in for num_processes (0 = one
    # per GPU and an explicit count of the same GPUs are the same training).
    for name, default in (("quantization", "none"), ("distributed", "ddp")):
        if settings[name] == default:
            del settings[name]
    if world_size > 1:
        settings["world_size"] = world_size
    h = hashlib.sha256()
    h.update(json.dumps(settings, sort_keys=True).encode())
    for row in train_rows:
        h.update(json.dumps(row, sort_keys=True).encode())
    return h.hexdigest()[:16]


@dataclass
class StoredCheckpoint:
    step: int
    uri: str
    blobs: dict[str, Any] = field(default_factory=dict)  # relative name -> blob

    @property
    def complete(self) -> bool:
        return MARKER in self.blobs


class CheckpointStore:
    """The run's checkpoint folder in GCS: scan, verify, download, upload, prune."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.rstrip("/")
        self.checkpoints_uri = f"{self.prefix}/checkpoints"
        self.attempt = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + f"-{os.getpid()}"

    # -- access ---------------------------------------------------------------------------
    def check_access(self) -> None:
        """List, write and delete a probe object: every permission the step needs, checked
        before any training. Raises InputError naming the fix."""
        if not storage.is_gcs(self.prefix):  # a local folder: checked without writing
            local_folder_writable(Path(self.prefix), "checkpoint_uri")
            return
        probe = f"{self.prefix}/.access-probe-{self.attempt}"
        with storage.gcs_errors(self.prefix, "use the checkpoint location"):
            storage.list_blobs(self.checkpoints_uri + "/")
            blob = storage.upload_bytes(b"probe", probe)
            storage.delete_blob(blob)

    # -- reading ----------------------------------------------------------------------------
    def scan(self) -> list[StoredCheckpoint]:
        """Every step folder under the prefix, complete or not, oldest first."""
        root = self.checkpoints_uri + "/"
        root_name = storage.object_name(root)
        found: dict[int, StoredCheckpoint] = {}
        with storage.gcs_errors(root, "list checkpoints in"):
            blobs = storage.list_blobs(root)
        for blob in blobs:
            folder, _, rel = blob.name[len(root_name) :].partition("/")
            m = STEP_DIR.match(folder)
            if not m or not rel:
                continue
            step = int(m.group(1))
            ckpt = found.setdefault(step, StoredCheckpoint(step, f"{root}{folder}"))
            ckpt.blobs[rel] = blob
        return [found[s] for s in sorted(found)]

    def problem(self, ckpt: StoredCheckpoint, want_fingerprint: str | None) -> str | None:
        """Why `ckpt` cannot be resumed from, or None when every file matches its manifest."""
        if not ckpt.complete:
            return "no completion marker (the upload was interrupted)"
        try:
            manifest = json.loads(ckpt.blobs[MARKER].download_as_bytes(retry=storage.retry_policy()))
            files = manifest["files"]
        except (ValueError, KeyError, TypeError) as exc:
            return f"unreadable manifest ({exc})"
        for rel, meta in files.items():
            blob = ckpt.blobs.get(rel)
            if blob is None:
                return f"{rel} is missing"
            if blob.size != meta["size"] or blob.crc32c != meta["crc32c"]:
                return f"{rel} differs from the manifest (size {blob.size} vs {meta['size']})"
        if want_fingerprint and manifest.get("fingerprint") not in (None, want_fingerprint):
            raise InputError(
                f"{ckpt.uri} was written with other training data, settings or number of "
                f"processes than this run ({manifest.get('fingerprint')} vs {want_fingerprint}); "
                "resuming would mix two trainings. Use another run name (--run-id) or "
                "checkpoint_uri, or the machine it was started on."
            )
        return None

    def discard(self, ckpt: StoredCheckpoint) -> None:
        """Marker first, so a kill halfway leaves an incomplete (ignored) folder, never a
        complete-looking one with files missing."""
        with storage.gcs_errors(ckpt.uri, "delete"):
            if MARKER in ckpt.blobs:
                storage.delete_blob(ckpt.blobs[MARKER])
            for rel, blob in ckpt.blobs.items():
                if rel != MARKER:
                    storage.delete_blob(blob)

    def prepare_resume(self, dest_root: Path, want_fingerprint: str | None) -> tuple[int, Path] | None:
        """Download the newest usable checkpoint as `dest_root/checkpoint-N` for the Trainer.

        Newer incomplete or corrupt folders are skipped with a warning and deleted (the rerun
        writes that step again); older incomplete ones are garbage and deleted too."""
        chosen: StoredCheckpoint | None = None
        for ckpt in reversed(self.scan()):
            if chosen is not None:
                if not ckpt.complete:
                    self.discard(ckpt)
                continue
            reason = self.problem(ckpt, want_fingerprint)
            if reason is None:
                chosen = ckpt
                continue
            log.warning("skipping checkpoint %s: %s; trying the one before", ckpt.uri, reason)
            self.discard(ckpt)
        if chosen is None:
            return None
        dest = dest_root / f"checkpoint-{chosen.step}"
        with storage.gcs_errors(chosen.uri, "download"):
            for rel, blob in chosen.blobs.items():
                if rel == MARKER:
                    continue
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                blob.download_to_filename(str(target), retry=storage.retry_policy())
        log.info("resuming from %s (step %d)", chosen.uri, chosen.step)
        return chosen.step, dest

    # -- writing ----------------------------------------------------------------------------
    def upload_checkpoint(self, local_dir: Path, step: int, fp: str) -> int:
        """Files, then the manifest with `if_generation_match=0` (created once, never
        overwritten). Returns the bytes uploaded."""
        from google.api_core import exceptions

        uri = f"{self.checkpoints_uri}/{step_name(step)}"
        with storage.gcs_errors(uri, "upload checkpoint to"):
            blobs = storage.upload_folder(local_dir, uri)
            files = {
                b.name.rsplit(f"{step_name(step)}/", 1)[1]: {"size": b.size, "crc32c": b.crc32c}
                for b in blobs
            }
            manifest = {
                "step": step,
                "files": files,
                "fingerprint": fp,
                "written_at": dt.datetime.now(dt.UTC).isoformat(),
                "attempt": self.attempt,
            }
            try:
                storage.upload_bytes(
                    json.dumps(manifest, indent=2).encode(), f"{uri}/{MARKER}", if_generation_match=0
                )
            except exceptions.PreconditionFailed:
                # A retried request whose first try had landed; the files are ours either way.
                log.info("marker of %s already present", uri)
        return sum(f["size"] for f in files.values())

    def prune(self, keep: int) -> None:
        """Keep the newest `keep` complete checkpoints; drop older ones and stray incomplete ones."""
        ckpts = self.scan()
        complete = [c for c in ckpts if c.complete]
        keep_steps = {c.step for c in complete[-keep:]}
        newest = complete[-1].step if complete else -1
        for ckpt in ckpts:
            if ckpt.step not in keep_steps and ckpt.step <= newest:
                self.discard(ckpt)

    def upload_log(self, path: Path) -> None:
        """Best effort: a log upload must not be what fails a training run."""
        if not path.exists():
            return
        try:
            with storage.gcs_errors(self.prefix, "upload the log to"):
                storage.upload_file(path, f"{self.prefix}/logs/attempt-{self.attempt}.log")
        except Exception as exc:  # noqa: BLE001
            log.warning("could not upload the step log: %s", exc)

    def upload_outputs(self, local_dir: Path) -> str:
        if not storage.is_gcs(self.prefix):  # a local store: the Model artifact is on this disk
            return str(local_dir)
        uri = f"{self.prefix}/model"
        with storage.gcs_errors(uri, "upload the trained adapter to"):
            storage.upload_folder(local_dir, uri)
        return uri


def local_folder_writable(folder: Path, what: str) -> None:
    """The nearest existing folder of `folder` is one this process may create files in."""
    q = folder
    while not q.exists():
        q = q.parent
    if not q.is_dir() or not os.access(q, os.W_OK | os.X_OK):
        raise InputError(f"{what} {folder}: {q} is not a folder this user can write to; give "
                         "a writable folder")


class Preempted(RuntimeError):
    """Training stopped early on a signal (SIGTERM, SIGINT, SIGHUP) after saving a complete
    checkpoint."""


@dataclass
class SaveRecord:
    step: int
    save_seconds: float  # Trainer writing checkpoint-N locally
    upload_seconds: float  # upload + manifest + prune
    bytes: int


def make_callback(store: CheckpointStore, cfg: TrainConfig, fp: str, log_path: Path) -> Any:
    """A TrainerCallback bound to `store` (built here so transformers is imported lazily).

    With several processes every rank runs it: the decisions that change control flow (save
    now, stop on SIGTERM) are agreed by all ranks (`distributed.any_rank`), the Trainer writes
    each rank's part of a checkpoint (rank 0 the adapter and optimizer, every rank its RNG state)
    and, after a barrier, rank 0 alone uploads, prunes and writes the log."""
    from transformers import TrainerCallback

    from components.fine_tune import distributed

    main = distributed.is_main()

    class CheckpointCallback(TrainerCallback):
        """Time-based saves, upload of every saved checkpoint, the step log as it goes."""

        def __init__(self) -> None:
            self.records: list[SaveRecord] = []
            self.last_save = time.monotonic()
            self.mark = time.monotonic()
            self.preempted_at: int | None = None  # set by Session's signal handler
            self.max_steps: int | None = None
            self.sigterm = False

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.last_save = self.mark = time.monotonic()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            now = time.monotonic()
            due = cfg.save_minutes > 0 and now - self.last_save >= cfg.save_minutes * 60
            if distributed.world_size() > 1:  # one small all-reduce per step
                flags = distributed.any_rank(due, args.device), distributed.any_rank(
                    self.sigterm, args.device)
                due, self.sigterm = flags
            if due:
                control.should_save = True
            if self.sigterm and self.preempted_at is None:
                # Preemption notice (Spot gives ~30 s): save this step now, then stop.
                self.preempted_at, self.max_steps = state.global_step, state.max_steps
                control.should_save = True
                control.should_training_stop = True
            self.mark = now

        def on_evaluate(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.mark = time.monotonic()

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if main:
                with log_path.open("a") as f:
                    f.write(json.dumps({"step": state.global_step, **(logs or {})}) + "\n")
            self.mark = time.monotonic()

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            distributed.barrier()  # every rank has written its part (RNG state) of checkpoint-N
            if not main:
                self.last_save = self.mark = time.monotonic()
                return
            start = time.monotonic()
            local = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            size = store.upload_checkpoint(local, state.global_step, fp)
            store.prune(cfg.save_total_limit)
            shutil.rmtree(local, ignore_errors=True)
            done = time.monotonic()
            rec = SaveRecord(state.global_step, round(start - self.mark, 3),
                             round(done - start, 3), size)
            self.records.append(rec)
            log.info("checkpoint step %d: saved in %.2f s, uploaded %.1f MB in %.2f s to %s",
                     rec.step, rec.save_seconds, size / 1e6, rec.upload_seconds,
                     f"{store.checkpoints_uri}/{step_name(rec.step)}")
            store.upload_log(log_path)
            self.last_save = self.mark = time.monotonic()

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if main:
                store.upload_log(log_path)

    return CheckpointCallback()


@contextmanager
def step_log(path: Path) -> Iterator[None]:
    """Copy this module's messages and GCS retry notices into `path` (uploaded with every
    checkpoint) and to stderr, for the duration of training."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.FileHandler(path)]
    root = logging.getLogger()
    if not root.handlers:
        handlers.append(logging.StreamHandler(sys.stderr))
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    loggers = {log: logging.INFO, logging.getLogger("google.api_core.retry"): logging.DEBUG}
    before = {lg: lg.level for lg in loggers}
    for lg, level in loggers.items():
        lg.setLevel(level)
    try:
        yield
    finally:
        for lg, level in before.items():
            lg.setLevel(level)
        for h in handlers:
            root.removeHandler(h)
            h.close()


def newest_complete(checkpoint_uri: str, run_name: str) -> tuple[int, int | None] | None:
    """(step, max_steps) of the run's newest complete checkpoint in a local folder, if any."""
    if not checkpoint_uri or storage.is_gcs(checkpoint_uri):
        return None
    for ckpt in reversed(CheckpointStore(task_prefix(checkpoint_uri, run_name)).scan()):
        if ckpt.complete:
            state = Path(ckpt.uri) / "trainer_state.json"
            total = json.loads(state.read_text()).get("max_steps") if state.exists() else None
            return ckpt.step, total
    return None


def open_store(cfg: TrainConfig, run_name: str, check: bool = True) -> CheckpointStore | None:
    """The run's checkpoint store with its permissions checked, or None without checkpoint_uri.
    Called before the model loads, so a wrong bucket costs seconds, not a GPU start (with
    several processes the launching process checks once, before they start)."""
    if not cfg.checkpoint_uri:
        return None
    store = CheckpointStore(task_prefix(cfg.checkpoint_uri, run_name))
    if check:
        store.check_access()
    return store


class Session:
    """Checkpointing for one training attempt: Trainer arguments, callback, resume, summary."""

    def __init__(self, store: CheckpointStore, cfg: TrainConfig, train_rows: list[dict[str, Any]],
                 work: Path, world_size: int = 1) -> None:
        self.store, self.cfg, self.work = store, cfg, work
        self.fingerprint = fingerprint(cfg, train_rows, world_size)
        self.log_path = work / "fine-tune.log"
        self.callback = make_callback(store, cfg, self.fingerprint, self.log_path)
        self.resumed_from_step: int | None = None
        self.signal_name = "SIGTERM"

    def training_args(self, args: Any) -> Any:
        """The Trainer saves every `save_steps` (and at the last step); the callback adds the
        time-based saves. Full state (optimizer, scheduler, RNG), not the model alone."""
        import dataclasses

        return dataclasses.replace(
            args, save_strategy="steps", save_steps=self.cfg.save_steps, save_only_model=False,
            save_total_limit=None,
        )

    @contextmanager
    def training(self) -> Iterator[str | None]:
        """Yields the local checkpoint to resume from (None: fresh start); the log goes to GCS
        at every checkpoint, at the end, and when training fails.

        While training, SIGTERM (the notice Vertex/Compute Engine sends before a Spot
        preemption or a shutdown), SIGINT (Ctrl-C) and SIGHUP (a dropped SSH session) make the
        current step end with a complete checkpoint, then the step fails with `Preempted`, so
        the rerun resumes from exactly that step.
        """
        from components.fine_tune import distributed

        main = distributed.is_main()
        with step_log(self.log_path) if main else nullcontext(), self._sigterm_saves():
            try:
                # Rank 0 picks and downloads the checkpoint into the work folder every rank
                # shares (one machine); the others wait and read the same files.
                found = self.store.prepare_resume(self.work, self.fingerprint) if main else None
                found = distributed.broadcast(found)
                self.resumed_from_step = found[0] if found else None
                if found is None and main:
                    log.info("no complete checkpoint under %s; starting fresh",
                             self.store.checkpoints_uri)
                yield str(found[1]) if found else None
                if self.callback.preempted_at is not None:
                    raise Preempted(
                        f"stopped by {self.signal_name} after step {self.callback.preempted_at}"
                        f"/{self.callback.max_steps}; its checkpoint is in "
                        f"{self.store.checkpoints_uri}: rerun to resume"
                    )
            except BaseException as exc:
                log.error("training failed: %s", exc)
                raise
            finally:
                if main:
                    self.store.upload_log(self.log_path)

    @contextmanager
    def _sigterm_saves(self) -> Iterator[None]:
        """Route SIGTERM, SIGINT and SIGHUP to the callback while training (main thread only, as
        signal requires). A terminal sends SIGINT and SIGHUP to the whole process group, so the
        step may get one twice (directly and from its supervisor): the first one counts."""
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_signal(signum: int, frame: Any) -> None:
            if not self.callback.sigterm:
                self.signal_name = signal.Signals(signum).name
                log.warning("%s: saving a checkpoint at the end of this step, then stopping",
                            self.signal_name)
            self.callback.sigterm = True

        caught = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        previous = {s: signal.signal(s, on_signal) for s in caught}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def summary(self, train_seconds: float) -> dict[str, Any]:
        """What checkpointing cost this attempt, and where it resumed from."""
        records = self.callback.records
        spent = sum(r.save_seconds + r.upload_seconds for r in records)
        return {
            "resumed_from_step": self.resumed_from_step,
            "checkpoint_prefix": self.store.checkpoints_uri,
            "checkpoints_saved": len(records),
            "checkpoint_seconds": round(spent, 3),
            "checkpoint_seconds_each": round(spent / len(records), 3) if records else None,
            "checkpoint_share": round(spent / train_seconds, 4) if train_seconds > 0 else None,
            "checkpoint_mb": round(records[-1].bytes / 1e6, 2) if records else None,
        }

    def publish(self, output_dir: Path) -> str:
        """The final outputs (adapter, metrics, history) next to the checkpoints, and the log."""
        uri = self.store.upload_outputs(output_dir)
        self.store.upload_log(self.log_path)
        return uri


@contextmanager
def during_training(session: Session | None) -> Iterator[str | None]:
    """`with during_training(s) as resume_from: trainer.train(resume_from_checkpoint=...)`,
    a no-op without checkpointing."""
    if session is None:
        yield None
        return
    with session.training() as resume_from:
        yield resume_from
