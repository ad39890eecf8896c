"""Experiment tracking that never fails a step: W&B, TensorBoard, MLflow, Vertex AI Experiments.

Teams watch runs where they already look, so each step reports through this one module to every
tracker in `TrackingConfig.trackers`. A backend that cannot be opened, or fails later, warns once
and is dropped; the step goes on. Keys come only from the environment (`.env` locally, Secret
Manager on Vertex), never from a parameter. Where each tracker writes: docs/tracking.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from components.common.config import TrackingConfig

log = logging.getLogger(__name__)

# `submit --local` sets it to runs/<run-id>, so event files and the MLflow store sit next to
# summary.json; elsewhere the run's output prefix is used (read at run time, never at import).
ENV_TRACKING_DIR = "DOLLY_LORA_TRACKING_DIR"
DEFAULT_EXPERIMENT = "dolly-lora"
# Steps whose numbers go to the Vertex experiment run: sequential (evaluate needs fine-tune), so
# they never update the same run at once; their parameters and headline metrics compare runs.
VERTEX_STEPS = ("fine-tune", "evaluate")


class DummyRun:
    """Stands in for a run: every call is accepted and ignored (the base of every backend)."""

    name = "none"
    active = False
    url: str | None = None
    id: str | None = None
    where: str | None = None
    report_to = "none"

    def close(self) -> None:
        pass

    def log(self, data: dict[str, Any], step: int | None = None) -> None:
        pass

    def summary(self, data: dict[str, Any]) -> None:
        pass

    def log_table(self, key: str, columns: list[str], rows: list[list[Any]]) -> None:
        pass

    def log_reference(self, name: str, kind: str, uri: str, metadata: dict | None = None) -> None:
        pass

    def log_html(self, key: str, html: str) -> None:
        pass

    def hf_env(self) -> dict[str, str]:
        """Environment Hugging Face's own tracker callbacks need (none here)."""
        return {}

    def report(self) -> dict[str, Any]:
        """Which trackers received the run (none: nothing was chosen)."""
        return {}


def public_uri(path: str) -> str:
    """The URI a person can open: Vertex mounts gs://b/x at /gcs/b/x inside the container."""
    if path.startswith("/gcs/"):
        return "gs://" + path[len("/gcs/") :]
    if "://" in path:
        return path
    return f"file://{os.path.abspath(path)}"


class WandbRun(DummyRun):
    """Thin wrapper so callers never touch wandb directly; every call is guarded."""

    name = "wandb"
    active = True
    report_to = "wandb"

    def __init__(self, run: Any) -> None:
        self._run = run
        self.id = run.id
        try:
            self.url = run.url  # None offline
        except Exception:  # noqa: BLE001 - a URL is a nicety
            self.url = None
        self.where = self.url or f"offline ({wandb_mode()})"

    def _guard(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - tracking must not fail the step
            log.warning("W&B %s failed (%s); continuing without it", what, exc)

    def log(self, data: dict[str, Any], step: int | None = None) -> None:
        self._guard("log", self._run.log, data, step=step)

    def summary(self, data: dict[str, Any]) -> None:
        self._guard("summary", self._run.summary.update, data)

    def log_table(self, key: str, columns: list[str], rows: list[list[Any]]) -> None:
        import wandb

        self._guard("table", lambda: self._run.log({key: wandb.Table(columns=columns, data=rows)}))

    def log_reference(self, name: str, kind: str, uri: str, metadata: dict | None = None) -> None:
        import wandb

        target = public_uri(uri)

        def _log() -> None:
            art = wandb.Artifact(name, type=kind, metadata={**(metadata or {}), "uri": target})
            try:
                art.add_reference(target, checksum=False)
            except Exception as exc:  # noqa: BLE001 - e.g. gs:// without credentials locally
                # Still log the artifact: its metadata names the URI, so lineage is kept.
                log.warning("W&B could not reference %s (%s); logging its URI only", target, exc)
            self._run.log_artifact(art)

        self._guard("artifact", _log)

    def log_html(self, key: str, html: str) -> None:
        import wandb

        self._guard("html", lambda: self._run.log({key: wandb.Html(html, inject=False)}))

    def close(self) -> None:
        """Finish this run now, as the step ends: left to wandb's exit hook, a step killed or
        ended by its runtime leaves the run marked crashed or without its final summary."""
        self._run.finish()


def wandb_mode() -> str:
    """online with a key, offline without one, or whatever WANDB_MODE says."""
    explicit = os.environ.get("WANDB_MODE")
    if explicit:
        return explicit
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def wandb_dir(step: str, output_path: str = "") -> str | None:
    """Offline, the run's files go under the step's output prefix (`tracking_dir`: /gcs/... on
    Vertex), so they outlive the container for a later `wandb sync`; online, or with WANDB_DIR
    set, wandb's own choice (None)."""
    if os.environ.get("WANDB_DIR") or wandb_mode() != "offline":
        return None
    where = tracking_dir(output_path) / "wandb" / step
    where.mkdir(parents=True, exist_ok=True)
    return str(where)


def open_wandb(step: str, config: dict[str, Any], project: str, group: str | None,
               output_path: str = "") -> WandbRun:
    mode = wandb_mode()
    if mode == "disabled":
        raise Unavailable("WANDB_MODE=disabled")
    if not project:
        raise Unavailable("no W&B project (wandb_project is empty)")
    import wandb

    raw = wandb.init(
        project=project,
        group=group or None,
        job_type=step,
        name=f"{group}-{step}" if group else None,
        config=config,
        mode=mode,
        reinit="finish_previous",
        dir=wandb_dir(step, output_path),
        settings=wandb.Settings(silent=True, console="off", init_timeout=60),
    )
    return WandbRun(raw)


@contextmanager
def scoped_env(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block only (HF callbacks read theirs when created)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Unavailable(Exception):
    """A tracker that is chosen but cannot be used here (the reason is the message)."""


def _numbers(data: dict[str, Any]) -> dict[str, float]:
    """The numeric entries (bools as 0/1): what every tracker can plot."""
    return {k: float(v) for k, v in data.items() if isinstance(v, int | float)}


def mounted(uri: str) -> str:
    """gs://b/x -> /gcs/b/x where the Vertex GCS mount exists (torch's SummaryWriter and SQLite
    write files; the mount turns them into objects). Anything else unchanged."""
    if uri.startswith("gs://") and Path("/gcs").is_dir():
        return "/gcs/" + uri[len("gs://"):]
    return uri


def tracking_dir(output_path: str = "") -> Path:
    """Where local tracking files of this run go: DOLLY_LORA_TRACKING_DIR (submit --local: next
    to summary.json), else the run's output prefix (`<root>/<job>` of an output artifact path,
    /gcs/... on Vertex), else ./tracking."""
    explicit = os.environ.get(ENV_TRACKING_DIR)
    if explicit:
        return Path(explicit)
    parts = Path(output_path).parts if output_path else ()
    if len(parts) >= 4:
        return Path(output_path).parent.parent
    return Path.cwd() / "tracking"


def tensorboard_dir(step: str, group: str | None, output_path: str = "") -> str:
    """The step's TensorBoard folder. On a Vertex custom job with a TensorBoard attached,
    Vertex sets AIP_TENSORBOARD_LOG_DIR and uploads what is written there (one folder per
    pipeline run and step, since the job's base output directory is shared between runs)."""
    aip = os.environ.get("AIP_TENSORBOARD_LOG_DIR")
    if aip:
        return "/".join([mounted(aip).rstrip("/"), group or "run", step])
    return str(tracking_dir(output_path) / "tensorboard" / step)


class TensorBoardRun(DummyRun):
    """Event files for TensorBoard (torch's SummaryWriter, as HF's TensorBoardCallback uses)."""

    name = "tensorboard"
    active = True
    report_to = "tensorboard"

    def __init__(self, log_dir: str, config: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        if "://" not in log_dir:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
        self.where = log_dir
        self.writer = SummaryWriter(log_dir=log_dir)
        self.writer.add_text("config", "```\n" + json.dumps(config, indent=2, default=str) + "\n```")
        self._step = 0

    def log(self, data: dict[str, Any], step: int | None = None) -> None:
        at = self._step if step is None else step
        for k, v in _numbers(data).items():
            self.writer.add_scalar(k, v, at)
        self._step = at + 1
        self.writer.flush()

    def summary(self, data: dict[str, Any]) -> None:
        for k, v in _numbers(data).items():
            self.writer.add_scalar(f"summary/{k}", v, 0)
        self.writer.flush()

    def log_table(self, key: str, columns: list[str], rows: list[list[Any]]) -> None:
        """A Markdown table in the Text tab (the first 100 rows: the full table is in the run's
        artifacts)."""
        def cell(v: Any) -> str:
            return str(v).replace("|", "\\|").replace("\n", " ")[:200]

        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows[:100]]
        self.writer.add_text(key, "\n".join(lines), 0)

    def log_reference(self, name: str, kind: str, uri: str, metadata: dict | None = None) -> None:
        self.writer.add_text(f"artifacts/{name}", f"{kind}: {public_uri(uri)}", 0)

    def close(self) -> None:
        self.writer.close()


def mlflow_uri(settings: TrackingConfig, output_path: str) -> str:
    """The parameter, else MLFLOW_TRACKING_URI, else a SQLite store next to the run (refused on
    a /gcs mount: SQLite needs file locks the mount does not give; use a server there)."""
    uri = settings.mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri:
        return uri
    folder = tracking_dir(output_path) / "mlflow"
    if str(folder).startswith("/gcs/"):
        raise Unavailable("no MLflow server: set the mlflow_tracking_uri parameter to it "
                          "(credentials: --mlflow-token-secret)")
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder.resolve() / 'mlflow.db'}"


class MlflowRun(DummyRun):
    """One MLflow run per step; HF's MLflowCallback logs the training curve into it (it uses the
    active run rather than starting its own)."""

    name = "mlflow"
    active = True
    report_to = "mlflow"

    def __init__(self, step: str, group: str | None, config: dict[str, Any], uri: str) -> None:
        # An unreachable server must cost seconds, not MLflow's default minutes of retries.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        import mlflow

        self._mlflow = mlflow
        mlflow.set_tracking_uri(uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
        exp = mlflow.get_experiment_by_name(name)
        if exp is None:
            artifacts = None
            if uri.startswith("sqlite:///"):  # keep artifacts beside the store, not in ./mlruns
                artifacts = (Path(uri[len("sqlite:///"):]).parent / "artifacts").as_uri()
            exp_id = mlflow.create_experiment(name, artifact_location=artifacts)
        else:
            exp_id = exp.experiment_id
        run = mlflow.start_run(experiment_id=exp_id, run_name=f"{group}-{step}" if group else step,
                               tags={"pipeline_run": group or "", "step": step})
        self.id = run.info.run_id
        self.where = uri
        if uri.startswith(("http://", "https://")):
            self.url = f"{uri.rstrip('/')}/#/experiments/{exp_id}/runs/{self.id}"
        # Prefixed: HF's MLflowCallback logs TrainingArguments under their own names, and MLflow
        # refuses a parameter logged twice with different values.
        params = {f"config.{k}": str(v)[:6000] for k, v in config.items()}
        items = list(params.items())
        for i in range(0, len(items), 100):
            mlflow.log_params(dict(items[i:i + 100]))

    @staticmethod
    def _key(k: str) -> str:
        return re.sub(r"[^0-9A-Za-z_\-. :/]", "_", k)

    def log(self, data: dict[str, Any], step: int | None = None) -> None:
        self._mlflow.log_metrics({self._key(k): v for k, v in _numbers(data).items()}, step=step)

    def summary(self, data: dict[str, Any]) -> None:
        self.log(data)

    def log_table(self, key: str, columns: list[str], rows: list[list[Any]]) -> None:
        table = {c: [r[i] for r in rows] for i, c in enumerate(columns)}
        self._mlflow.log_table(data=table, artifact_file=f"{key}.json")

    def log_reference(self, name: str, kind: str, uri: str, metadata: dict | None = None) -> None:
        """A model folder is copied as an artifact (an adapter is megabytes); datasets are
        referenced by URI only."""
        self._mlflow.set_tag(f"artifact.{name}", public_uri(uri))
        if kind == "model" and Path(uri).is_dir():
            self._mlflow.log_artifacts(uri, artifact_path=name)

    def log_html(self, key: str, html: str) -> None:
        self._mlflow.log_text(html, f"{key}.html")

    def close(self) -> None:
        self._mlflow.flush_async_logging()  # HF's MLflowCallback logs asynchronously
        self._mlflow.end_run()


def vertex_run_name(group: str | None, experiment: str) -> str:
    """An ExperimentRun name from the pipeline run: lowercase, digits and '-', and short enough
    that Vertex's context id (`<experiment>-<run>`) stays within 128 characters."""
    name = re.sub(r"[^a-z0-9-]+", "-", (group or "run").lower()).strip("-") or "run"
    return name[: 127 - len(experiment)].rstrip("-")


class VertexExperimentRun(DummyRun):
    """Parameters and headline metrics of the pipeline run in a Vertex AI experiment, so runs
    compare side by side in the console. One ExperimentRun per pipeline run, shared by the
    steps in VERTEX_STEPS (created by the first, resumed by the next). Project and region: the
    step's environment (Vertex sets CLOUD_ML_PROJECT_ID and CLOUD_ML_REGION in its jobs)."""

    name = "vertex"
    active = True

    def __init__(self, step: str, group: str | None, config: dict[str, Any], experiment: str,
                 project: str | None = None, location: str | None = None,
                 credentials: Any = None) -> None:
        from google.api_core import exceptions
        from google.cloud import aiplatform

        self._step = step
        where = {"project": project, "location": location, "credentials": credentials}
        aiplatform.Experiment.get_or_create(experiment, **where)
        # A sweep trial (`fine-tune-<trial>`) is a run of its own; the rest share the group's.
        trial = step.removeprefix("fine-tune-") if step.startswith("fine-tune-") else ""
        run_name = vertex_run_name(f"{group or 'run'}-{trial}" if trial else group, experiment)
        try:
            self._run = aiplatform.ExperimentRun(run_name, experiment=experiment, **where)
        except exceptions.NotFound:
            self._run = aiplatform.ExperimentRun.create(run_name, experiment=experiment, **where)
        self.id = run_name
        self.where = f"{experiment}/{run_name}"
        params: dict[str, Any] = {"pipeline_run": group or ""}
        for k, v in config.items():
            params[f"{step}.{k}"] = v if isinstance(v, int | float | str) and not isinstance(
                v, bool) else str(v)
        self._run.log_params(params)

    def log(self, data: dict[str, Any], step: int | None = None) -> None:
        """Nothing: Vertex time series need a backing TensorBoard, and the curves already go
        to the TensorBoard tracker; the numbers that compare runs arrive through `summary`."""

    def summary(self, data: dict[str, Any]) -> None:
        metrics = {re.sub(r"[^0-9A-Za-z_-]", "_", k): v for k, v in _numbers(data).items()}
        if metrics:
            self._run.log_metrics(metrics)

    def close(self) -> None:
        from google.cloud.aiplatform.compat.types import execution

        self._run.update_state(execution.Execution.State.COMPLETE)


class MultiRun(DummyRun):
    """Every chosen backend behind the one interface the steps use. A backend that raises is
    warned about once and dropped; the step never sees the error."""

    name = "multi"

    def __init__(self, chosen: list[str]) -> None:
        self.chosen = chosen
        self.runs: list[DummyRun] = []
        self.failed: dict[str, str] = {}

    def add(self, run: DummyRun) -> None:
        self.runs.append(run)

    def fail(self, name: str, what: str, exc: BaseException | str) -> None:
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        if name not in self.failed:
            log.warning("tracker %s: %s failed (%s); the step goes on without it", name, what,
                        reason)
            self.failed[name] = f"{what}: {reason}"

    def _each(self, what: str, method: str, *args: Any, **kwargs: Any) -> None:
        for run in list(self.runs):
            try:
                getattr(run, method)(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - tracking must not fail the step
                self.fail(run.name, what, exc)
                self.runs.remove(run)
                with contextlib.suppress(Exception):
                    run.close()

    @property
    def active(self) -> bool:  # type: ignore[override]
        return bool(self.runs)

    def _backend(self, name: str) -> DummyRun | None:
        return next((r for r in self.runs if r.name == name), None)

    @property
    def url(self) -> str | None:  # type: ignore[override]
        """The W&B run URL (what the reports link to)."""
        run = self._backend("wandb")
        return run.url if run else None

    @property
    def report_to(self) -> list[str] | str:  # type: ignore[override]
        """Hugging Face `report_to`: its own integrations log the training curves."""
        names = [r.report_to for r in self.runs if r.report_to != "none"]
        return names or "none"

    def hf_env(self) -> dict[str, str]:
        """Environment for HF's callbacks: TensorBoardCallback writes where our events go."""
        tb = self._backend("tensorboard")
        return {"TENSORBOARD_LOGGING_DIR": tb.where} if tb and tb.where else {}

    def log(self, data: dict[str, Any], step: int | None = None) -> None:
        self._each("log", "log", data, step=step)

    def summary(self, data: dict[str, Any]) -> None:
        self._each("summary", "summary", data)

    def log_table(self, key: str, columns: list[str], rows: list[list[Any]]) -> None:
        self._each("table", "log_table", key, columns, rows)

    def log_reference(self, name: str, kind: str, uri: str, metadata: dict | None = None) -> None:
        self._each("artifact", "log_reference", name, kind, uri, metadata)

    def log_html(self, key: str, html: str) -> None:
        self._each("html", "log_html", key, html)

    def close(self) -> None:
        for run in list(self.runs):
            try:
                run.close()
            except Exception as exc:  # noqa: BLE001
                self.fail(run.name, "finish", exc)
                self.runs.remove(run)

    def report(self) -> dict[str, Any]:
        """Which chosen trackers received this step's run, where, and why any did not."""
        return {
            "chosen": list(self.chosen),
            "received": [r.name for r in self.runs if r.name not in self.failed],
            "where": {r.name: r.url or r.where or "" for r in self.runs},
            "failed": dict(self.failed),
        }


def chosen_trackers(settings: TrackingConfig | None, step: str) -> list[str]:
    """The trackers `settings` names for `step` (Vertex Experiments only for VERTEX_STEPS);
    none without settings (a step whose section has no tracking fields, such as
    fetch-base-model)."""
    names = settings.tracker_list if settings is not None else []
    return [n for n in names if n != "vertex" or step.startswith(VERTEX_STEPS)]


def open_backend(name: str, step: str, config: dict[str, Any], project: str, group: str | None,
                 settings: TrackingConfig, output_path: str) -> DummyRun:
    if name == "wandb":
        return open_wandb(step, config, project, group, output_path)
    if name == "tensorboard":
        return TensorBoardRun(tensorboard_dir(step, group, output_path), config)
    if name == "mlflow":
        return MlflowRun(step, group, config, mlflow_uri(settings, output_path))
    if name == "vertex":
        experiment = settings.vertex_experiment or DEFAULT_EXPERIMENT
        return VertexExperimentRun(step, group, config, experiment)
    raise Unavailable(f"unknown tracker {name}")


PROBE_TIMEOUT_S = 3.0


def wandb_unreachable(timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why the W&B server does not answer (within `timeout` seconds), or None when it does.

    Any HTTP answer counts (even 401/404): the point is whether the network gets there at all.
    Goes through the proxy settings urllib reads from the environment, as wandb does."""
    import urllib.error
    import urllib.request

    url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").rstrip("/")
    try:
        with urllib.request.urlopen(url, timeout=timeout):  # noqa: S310 - a fixed https URL
            return None
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{url} did not answer within {timeout:g} s ({reason})"


def go_offline_if_unreachable(timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Check once, before a run: with a W&B key (online mode) but no way to reach the server,
    every step would wait out wandb's 60 s init timeout. Then set WANDB_MODE=offline in this
    process's environment (inherited by every step it starts) and return the one line to say;
    None when nothing changed."""
    if wandb_mode() != "online":
        return None
    why = wandb_unreachable(timeout)
    if why is None:
        return None
    os.environ["WANDB_MODE"] = "offline"
    return (f"W&B: {why}; logging offline for the rest of this run (`wandb sync` uploads the "
            "runs later)")


@contextmanager
def tracking_run(
    step: str, config: dict[str, Any], project: str | None = None, group: str | None = None,
    settings: TrackingConfig | None = None, output_path: str = "",
) -> Iterator[MultiRun]:
    """One run per pipeline step in every chosen tracker (`settings.trackers`; none without
    settings), grouped by pipeline run. `output_path` (an output artifact of the step) locates
    the run's output prefix for local files (TensorBoard, a local MLflow store). `project`
    (W&B) defaults to `settings.wandb_project`; '' means no W&B project."""
    if project is None:
        project = settings.wandb_project if settings is not None else ""
    tracker = MultiRun(chosen_trackers(settings, step))
    if "wandb" in tracker.chosen and project and (note := go_offline_if_unreachable()):
        log.warning("%s", note)  # a step on its own (Vertex): probed in 3 s, not 60
    for name in tracker.chosen:
        try:
            tracker.add(open_backend(name, step, config, project, group, settings, output_path))
        except Exception as exc:  # noqa: BLE001 - offline, outage, bad key: never fatal
            tracker.fail(name, "start", exc)
    try:
        yield tracker
    finally:
        tracker.close()
