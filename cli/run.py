"""`submit`, the command itself: run the pipeline locally (`--local`), on Vertex AI Pipelines,
or on a Kubeflow Pipelines host (`--kfp-host`); and `submit upload`.

    uv run submit --local                                      # whole DAG, offline, tiny default
    uv run submit --local --param max_steps=20                 # any pipeline parameter
    uv run python compile.py && uv run submit --project P --region us-central1 \\
        --pipeline-root gs://BUCKET/pipelines [--wait] [--dry-run]
    uv run submit --kfp-host https://kfp.example.com           # open-source KFP endpoint
    uv run submit upload --repo dolly-lora                     # template -> Artifact Registry

Secrets are never parameters: the W&B key and HF token come from the environment/.env locally
and from Secret Manager on Vertex (by resource name).
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
from pathlib import Path
from typing import Annotated

import typer

from cli import app as a
from cli.app import Options, app, guard, location, note
from cli.sweep_submit import sweep_items


@app.callback(invoke_without_command=True)
def submit(
    ctx: typer.Context,
    local: a.LocalOpt = False,
    params: a.ParamOpt = None,
    real_defaults: a.RealDefaultsOpt = False,
    run_id: a.RunIdOpt = None,
    output_dir: a.OutputDirOpt = Path("runs"),
    project: a.ProjectOpt = None,
    region: a.RegionOpt = None,
    pipeline_root: a.PipelineRootOpt = None,
    service_account: a.ServiceAccountOpt = "",
    network: a.NetworkOpt = "",
    labels: a.LabelOpt = None,
    experiment: a.ExperimentOpt = "",
    cache: a.CacheOpt = None,
    template: a.TemplateOpt = None,
    hf_token_secret: a.HfSecretOpt = "",
    wandb_key_secret: a.WandbSecretOpt = "",
    mlflow_token_secret: a.MlflowSecretOpt = "",
    wait: a.WaitOpt = False,
    dry_run: a.DryRunOpt = False,
    kfp_host: a.KfpHostOpt = None,
    checkpoint_uri: a.CheckpointOpt = None,
    public_model: a.PublicModelOpt = False,
    tensorboard: a.TensorboardOpt = "",
    base_output_dir: a.BaseOutputDirOpt = "",
    timeout: a.TimeoutOpt = "",
    verbose: a.VerboseOpt = False,
    profile: a.ProfileOpt = None,
    max_cost: a.MaxCostOpt = None,
    resume: a.ResumeOpt = None,
    sweep: a.SweepOpt = None,
    sweep_parallelism: a.SweepParallelismOpt = 0,
    sweep_max_trials: a.SweepMaxTrialsOpt = 32,
    batch: a.BatchOpt = False,
    capacity: a.BatchCapacityOpt = "SPOT",
    image: a.ImageOpt = "",
) -> None:
    flags = dict(locals())
    del flags["ctx"]
    ctx.obj = opts = Options(**flags)
    if ctx.invoked_subcommand is None:
        a.load_dotenv()
        run(opts)


def run(opts: Options) -> None:
    """The run the options ask for: on a KFP host, on Vertex, or here."""
    from cli import submission

    if opts.batch:
        from cli.batch_run import run_batch

        guard(lambda: run_batch(opts), "Cloud Batch")
    elif opts.kfp_host:
        guard(lambda: submission.run_kfp(opts), f"Kubeflow Pipelines at {opts.kfp_host}")
    elif not opts.local:
        guard(lambda: submission.run_vertex(opts), "Vertex AI")
    else:
        from cli.local_resume import Interrupted

        try:
            summary = guard(lambda: run_local_job(opts), "GCS")
        except Interrupted as exc:  # before the pipeline started: nothing was written
            a.fail(f"interrupted ({exc}) before the run started; nothing written", exc.code)
        if summary is None:  # --dry-run: checked, nothing written
            return
        result = json.loads(summary.read_text())
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
            print(summary)
        if result["status"] == "interrupted":
            raise typer.Exit(128 + signal.Signals[result["signal"]].value)
        if result["status"] != "SUCCESS":
            raise typer.Exit(1)


def run_local_job(opts: Options) -> Path | None:
    from cli.local_run import run_local
    from cli.submission import resolved
    from components.common.errors import InputError
    from pipelines.compiler import default_run_id
    from planning.profiles import DEFAULT_PROFILE, LOCAL_PROFILE

    if opts.resume:
        from cli.local_resume import load_spec

        if opts.params or opts.run_id:
            raise InputError("--resume continues a run with its own parameters and run id; "
                             "drop --param and --run-id (or start a new run without --resume)")
        params, defaults = load_spec(opts.output_dir, opts.resume)
        return run_local(params, opts.output_dir, opts.resume, verbose=opts.verbose,
                         dry_run=opts.dry_run, defaults=defaults, resume=True)
    run_id = opts.run_id or default_run_id()
    if not re.fullmatch(r"[A-Za-z0-9._-]+", run_id) or run_id in (".", ".."):
        raise InputError(f"--run-id {run_id!r} cannot name a run folder; use letters, digits, "
                         ". _ - (e.g. --run-id trial-2)")
    # The run id names the checkpoint folder, so the same --run-id finds it again. A --profile
    # runs that profile's real model (it needs the hub, like --real-defaults).
    r = resolved(opts, "local", run_name=run_id,
                 default_profile=DEFAULT_PROFILE if opts.real_defaults else LOCAL_PROFILE)
    trials = sweep_items(opts, r.params)
    return run_local(r.params, opts.output_dir, run_id, verbose=opts.verbose, dry_run=opts.dry_run,
                     defaults=r.real_defaults_used, sweep=trials,
                     sweep_parallelism=opts.sweep_parallelism)



@app.command("upload")
def upload(
    ctx: typer.Context,
    repo: Annotated[str, typer.Option(help="Artifact Registry KFP repository.",
                                      envvar="DOLLY_LORA_KFP_REPO")] = "dolly-lora",
    tag: Annotated[list[str] | None, typer.Option(help="Extra tag (repeat).")] = None,
) -> None:
    """Push the compiled template to Artifact Registry, tagged with the git commit and latest."""
    opts = a.options(ctx)

    def body() -> None:
        from cli import templates, vertex
        from cli.failures import require_credentials, require_reachable
        from cli.submission import resolved, template

        project, region = location(opts)
        require_credentials("Artifact Registry")  # in a second, before kfp's import
        require_reachable(f"https://{region}-kfp.pkg.dev", "Artifact Registry")
        path = Path(template(opts, resolved(opts, "vertex")))
        commit = templates.template_commit(str(path))
        tags = [commit, "latest", *(tag or [])]
        package, version = vertex.upload_template(path, project, region, repo, tags)
        print(f"https://{region}-kfp.pkg.dev/{project}/{repo}/{package}/{commit}")
        note(f"uploaded {package} version {version} tags {', '.join(tags)}")

    guard(body, "Artifact Registry")
