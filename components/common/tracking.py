"""Experiment tracking that never fails a step: W&B when it works, a no-op otherwise.

Why: W&B is how people watch training from anywhere, but a missing key, an outage or a test must
never cost a run. With no WANDB_API_KEY (and no WANDB_MODE) the run logs offline to disk, never
prompting; `WANDB_MODE=disabled` or any init error gives the no-op `DummyRun` (as nanochat's
`DummyWandb`). The key comes only from the environment (a git-ignored `.env` locally, Secret
Manager on Vertex), never from a parameter.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)


class DummyRun:
    """Stands in for a wandb run: every call is accepted and ignored."""

    active = False
    url: str | None = None
    id: str | None = None
    report_to = "none"

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


def public_uri(path: str) -> str:
    """The URI a person can open: Vertex mounts gs://b/x at /gcs/b/x inside the container."""
    if path.startswith("/gcs/"):
        return "gs://" + path[len("/gcs/") :]
    if "://" in path:
        return path
    return f"file://{os.path.abspath(path)}"


class WandbRun(DummyRun):
    """Thin wrapper so callers never touch wandb directly; every call is guarded."""

    active = True
    report_to = "wandb"

    def __init__(self, run: Any) -> None:
        self._run = run
        self.id = run.id
        try:
            self.url = run.url  # None offline
        except Exception:  # noqa: BLE001 - a URL is a nicety
            self.url = None

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


def wandb_mode() -> str:
    """online with a key, offline without one, or whatever WANDB_MODE says."""
    explicit = os.environ.get("WANDB_MODE")
    if explicit:
        return explicit
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


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
    step: str, config: dict[str, Any], project: str, group: str | None = None
) -> Iterator[DummyRun]:
    """One W&B run per pipeline step (job_type = step), grouped by pipeline run."""
    if project and (note := go_offline_if_unreachable()):
        log.warning("%s", note)  # a step on its own (Vertex): probed in 3 s, not 60
    mode = wandb_mode()
    run: DummyRun = DummyRun()
    if mode != "disabled" and project:
        try:
            import wandb

            raw = wandb.init(
                project=project,
                group=group or None,
                job_type=step,
                name=f"{group}-{step}" if group else None,
                config=config,
                mode=mode,
                reinit="finish_previous",
                settings=wandb.Settings(silent=True, console="off", init_timeout=60),
            )
            run = WandbRun(raw)
        except Exception as exc:  # noqa: BLE001 - offline, outage, bad key: never fatal
            log.warning("W&B unavailable (%s); tracking disabled for %s", exc, step)
    try:
        yield run
    finally:
        if run.active:
            try:
                import wandb

                wandb.finish()
            except Exception as exc:  # noqa: BLE001
                log.warning("W&B finish failed (%s)", exc)
