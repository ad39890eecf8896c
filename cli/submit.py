"""`submit`: run the pipeline locally, on Vertex AI Pipelines, or on a Kubeflow Pipelines host.

    uv run submit --local                                      # whole DAG, offline, tiny default
    uv run submit --local --param max_steps=20                 # any pipeline parameter
    uv run python compile.py && uv run submit --project P --region us-central1 \\
        --pipeline-root gs://BUCKET/pipelines [--wait] [--dry-run]
    uv run submit upload --repo dolly-lora                     # template -> Artifact Registry
    uv run submit schedule create --cron "0 3 * * 1"           # (project etc. from env/.env)
    uv run submit --kfp-host https://kfp.example.com           # open-source KFP endpoint
    uv run submit params                                       # list parameters and defaults
    uv run submit deploy MODEL_ID@VERSION --dry-run            # serving: see cli/serving.py
    uv run submit serve runs/RUN_ID                            # local OpenAI-compatible server

Every Vertex option also comes from an environment variable or a git-ignored `.env` (see each
option's help). Options before a subcommand apply to it: `submit --project P schedule list`.
Heavy imports (kfp, torch, google.cloud.aiplatform: 17-19 s) happen inside the commands that need
them, so `--help` answers at once. Secrets are never parameters: the W&B key and HF token come
from the environment/.env locally and from Secret Manager on Vertex (by resource name).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from cli import serving
from pipelines.compiler import DEFAULT_TEMPLATE, RUN_ID_PREFIX, default_run_id

app = typer.Typer(
    add_completion=False,
    no_args_is_help=False,
    help="Run the Dolly LoRA pipeline locally (KFP local runner), on Vertex AI Pipelines, or on "
    "a Kubeflow Pipelines host.",
)
schedule_app = typer.Typer(help="Vertex AI pipeline schedules (cron).", no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")
serving.register(app)  # deploy, undeploy, predict, serve (cli/serving.py)


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _note(message: str) -> None:
    typer.secho(message, fg=typer.colors.YELLOW, err=True)


def _load_dotenv() -> None:
    """Options and secrets from a git-ignored .env; the environment wins."""
    from dotenv import load_dotenv

    load_dotenv(Path.cwd() / ".env", override=False)


@dataclass
class Options:
    """The top-level options, kept for subcommands (`submit --project P schedule list`)."""

    params: list[str] = field(default_factory=list)
    project: str | None = None
    region: str | None = None
    pipeline_root: str | None = None
    service_account: str = ""
    network: str = ""
    labels: list[str] = field(default_factory=list)
    experiment: str = ""
    cache: bool | None = None
    template: str | None = None
    dry_run: bool = False
    run_id: str | None = None
    secrets: dict[str, str] = field(default_factory=dict)
    checkpoint_uri: str | None = None
    public_model: bool = False
    compile_overrides: dict[str, str] = field(default_factory=dict)
    profile: str | None = None
    max_cost: float | None = None


@app.callback(invoke_without_command=True)
def submit(
    ctx: typer.Context,
    local: Annotated[
        bool, typer.Option("--local", help="Run with KFP's local runner on this machine.")
    ] = False,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Pipeline parameter override, name=value (repeat)."),
    ] = None,
    real_defaults: Annotated[
        bool,
        typer.Option(
            "--real-defaults",
            help="Locally, start from the real job's defaults (Gemma 3 1B, Dolly-15k from the "
            "hub) instead of the embedded tiny default.",
        ),
    ] = False,
    run_id: Annotated[
        str | None, typer.Option(help="Name of this run / Vertex job id (default: "
                                 f"{RUN_ID_PREFIX}-<timestamp>).")
    ] = None,
    output_dir: Annotated[
        Path, typer.Option(help="Where local runs write their outputs and summary.json.")
    ] = Path("runs"),
    project: Annotated[str | None, typer.Option(
        help="Google Cloud project.", envvar=["DOLLY_LORA_PROJECT", "GOOGLE_CLOUD_PROJECT"])
    ] = None,
    region: Annotated[str | None, typer.Option(
        help="Vertex AI region, e.g. us-central1.",
        envvar=["DOLLY_LORA_REGION", "GOOGLE_CLOUD_REGION"])
    ] = None,
    pipeline_root: Annotated[str | None, typer.Option(
        help="gs:// folder for pipeline artifacts.", envvar="DOLLY_LORA_PIPELINE_ROOT")
    ] = None,
    service_account: Annotated[str, typer.Option(
        help="Service account the job runs as.", envvar="DOLLY_LORA_SERVICE_ACCOUNT")
    ] = "",
    network: Annotated[str, typer.Option(
        help="VPC network to peer (projects/NUMBER/global/networks/NAME).",
        envvar="DOLLY_LORA_NETWORK")
    ] = "",
    label: Annotated[list[str] | None, typer.Option(
        "--label", help="Job label key=value (repeat, or comma-separated in the env var).",
        envvar="DOLLY_LORA_LABELS")
    ] = None,
    experiment: Annotated[str, typer.Option(
        help="Vertex AI experiment to record the run in.", envvar="DOLLY_LORA_EXPERIMENT")
    ] = "",
    cache: Annotated[bool | None, typer.Option(
        "--cache/--no-cache", help="Turn step caching on/off for every task (default: as "
        "compiled).", envvar="DOLLY_LORA_CACHING")
    ] = None,
    template: Annotated[str | None, typer.Option(
        help="Compiled YAML or Artifact Registry template URL "
        f"(https://REGION-kfp.pkg.dev/PROJECT/REPO/PACKAGE/TAG) [{DEFAULT_TEMPLATE}].",
        envvar="DOLLY_LORA_TEMPLATE")
    ] = None,
    hf_token_secret: Annotated[str, typer.Option(
        help="Secret Manager name of the HF token (projects/P/secrets/NAME).",
        envvar="DOLLY_LORA_HF_TOKEN_SECRET")
    ] = "",
    wandb_key_secret: Annotated[str, typer.Option(
        help="Secret Manager name of the W&B API key.", envvar="DOLLY_LORA_WANDB_KEY_SECRET")
    ] = "",
    mlflow_token_secret: Annotated[str, typer.Option(
        help="Secret Manager name of the MLflow tracking token (MLFLOW_TRACKING_TOKEN).",
        envvar="DOLLY_LORA_MLFLOW_TOKEN_SECRET")
    ] = "",
    wait: Annotated[bool, typer.Option(
        "--wait", help="Follow the job until it ends; exit 1 if it failed.")
    ] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the exact request as JSON; send nothing, need no credentials. "
        "With --local: run every check on the parameters and data, write nothing.")
    ] = False,
    kfp_host: Annotated[str | None, typer.Option(
        help="Submit to this Kubeflow Pipelines endpoint with kfp.Client instead of Vertex.",
        envvar="KFP_HOST")
    ] = None,
    checkpoint_uri: Annotated[
        str | None,
        typer.Option(
            help="gs://BUCKET/PREFIX for resumable fine-tune checkpoints (the checkpoint_uri "
            "parameter; STORAGE_EMULATOR_HOST for an emulator). Locally, rerun with the same "
            "--run-id to resume; on Vertex a restarted worker resumes by itself.",
            envvar="DOLLY_LORA_CHECKPOINT_URI",
        ),
    ] = None,
    public_model: Annotated[bool, typer.Option(
        "--public-model", help="The Hugging Face base model needs no token: submit without "
        "--hf-token-secret.", envvar="DOLLY_LORA_PUBLIC_MODEL")
    ] = False,
    tensorboard: Annotated[str, typer.Option(
        help="Vertex TensorBoard the fine-tune job streams its curves to "
        "(projects/P/locations/L/tensorboards/ID); recompiles the default template with it.",
        envvar="DOLLY_LORA_TENSORBOARD")
    ] = "",
    base_output_dir: Annotated[str, typer.Option(
        help="gs:// folder for the fine-tune job's outputs; Vertex writes the TensorBoard logs "
        "under it (needed with --tensorboard).", envvar="DOLLY_LORA_BASE_OUTPUT_DIR")
    ] = "",
    verbose: Annotated[bool, typer.Option(
        "--verbose", help="--local: also print every step's output and kfp's logs as they "
        "come (always in <output-dir>/<run-id>/steps.log).")
    ] = False,
    profile: Annotated[str | None, typer.Option(
        help="Profile (planning/profiles.py PROFILES): model, machine, GPUs, precision, batch "
        "and sequence together: default, 4b-qlora, 12b-qlora, 4b-lora-4xl4, "
        "12b-lora-fsdp-4xl4, embedded. The default template is recompiled for it; --param still "
        "overrides. Locally: the profile's parameters instead of the embedded default.",
        envvar="DOLLY_LORA_PROFILE")
    ] = None,
    max_cost: Annotated[float | None, typer.Option(
        "--max-cost", min=0.0, help="Refuse (exit 2, nothing sent) when the estimated cost in "
        "USD is above this.", envvar="DOLLY_LORA_MAX_COST")
    ] = None,
) -> None:
    secrets = {k: v for k, v in (("hf_token_secret", hf_token_secret),
                                 ("wandb_api_key_secret", wandb_key_secret),
                                 ("mlflow_token_secret", mlflow_token_secret)) if v}
    opts = Options(
        params=list(param or []), project=project, region=region, pipeline_root=pipeline_root,
        service_account=service_account, network=network, labels=list(label or []),
        experiment=experiment, cache=cache, template=template, dry_run=dry_run, run_id=run_id,
        secrets=secrets, checkpoint_uri=checkpoint_uri, public_model=public_model,
        compile_overrides={k: v for k, v in (("tensorboard", tensorboard),
                                             ("base_output_directory", base_output_dir)) if v},
        profile=profile, max_cost=max_cost,
    )
    ctx.obj = opts
    if ctx.invoked_subcommand is not None:
        return
    _load_dotenv()
    if kfp_host:
        _guard(lambda: _run_kfp(opts, kfp_host), f"Kubeflow Pipelines at {kfp_host}")
        return
    if not local:
        _guard(lambda: _run_vertex(opts, wait=wait), "Vertex AI")
        return
    summary = _guard(lambda: _run_local(opts, real_defaults, output_dir, verbose), "GCS")
    if summary is None:  # --dry-run: checked, nothing written
        return
    print(summary)
    if json.loads(summary.read_text())["status"] != "SUCCESS":
        raise typer.Exit(1)


def _run_local(opts: Options, real_defaults: bool, output_dir: Path, verbose: bool) -> Path | None:
    from cli.local_run import run_local
    from planning.profiles import DEFAULT_PROFILE, LOCAL_PROFILE

    run_id = opts.run_id or default_run_id()
    # The run id names the checkpoint folder, so the same --run-id finds it again. A --profile
    # runs that profile's real model (it needs the hub, like --real-defaults).
    r = _resolve(opts, "local", run_name=run_id,
                 default_profile=DEFAULT_PROFILE if real_defaults else LOCAL_PROFILE)
    return run_local(r.params, output_dir, run_id, verbose=verbose, dry_run=opts.dry_run,
                     defaults=r.real_defaults_used)


def _resolve(opts: Options, target: str, run_name: str | None = None, **kwargs: Any) -> Any:
    """`pipelines.settings.resolve` for this submission: the profile, the compile settings and
    parameters the flags set, over the settings the template to send was compiled with."""
    from pipelines.compiler import DEFAULT_TEMPLATES, read_stamp
    from pipelines.settings import resolve

    params = {**opts.secrets, **({"checkpoint_uri": opts.checkpoint_uri}
                                 if opts.checkpoint_uri else {})}
    if run_name is not None:
        params["run_name"] = run_name
    base = None
    if target != "local":
        if target == "vertex" and opts.experiment:  # the steps log to the run's experiment
            params["vertex_experiment"] = opts.experiment
        template = opts.template or str(DEFAULT_TEMPLATES[target])
        if not template.startswith("https://") and Path(template).is_file():
            base = (read_stamp(Path(template)) or {}).get("settings")
    return resolve(profile=opts.profile, settings={**opts.compile_overrides, "target": target},
                   params=params, param_pairs=opts.params, base=base, **kwargs)


def _preflight(opts: Options, r: Any) -> dict[str, Any]:
    """Parameters the user set, checked, and the base model's access, before anything is
    compiled or sent (a gated model without a token would fail after the machines start)."""
    from cli import vertex

    vertex.check_model_access(r.params["base_model"], r.params["hf_token_secret"],
                              opts.public_model)
    vertex.check_remote_inputs(r.overrides)
    return r.overrides


def _template(opts: Options, r: Any) -> str:
    """The template to send, checked against the code and the compile settings asked for: the
    default one is (re)compiled when missing or stale; a named one is refused when stale."""
    from cli import vertex

    path, note = vertex.resolve_template(opts.template, r)
    if note:
        _note(note)
    return path


def _vertex_settings(opts: Options) -> Any:
    from cli import vertex

    return vertex.VertexSettings.build(
        project=opts.project, region=opts.region, pipeline_root=opts.pipeline_root,
        service_account=opts.service_account, network=opts.network,
        labels=vertex.parse_labels(opts.labels), experiment=opts.experiment,
        enable_caching=opts.cache, template=opts.template or str(DEFAULT_TEMPLATE),
        job_id=opts.run_id or "",
    )


def _checked_template(settings: Any, values: dict[str, Any], dry_run: bool) -> None:
    from cli import vertex
    from components.common.errors import InputError
    from components.common.images import PLACEHOLDER_PROJECT

    spec = vertex.load_template(settings.template)
    vertex.check_parameters(spec, values)
    if spec is not None and not values.get("checkpoint_uri"):
        strategy = vertex.training_strategy(spec)
        if strategy in ("SPOT", "FLEX_START"):
            raise InputError(
                f"the template trains on {strategy} capacity, which can be preempted; pass "
                "--checkpoint-uri gs://BUCKET/PREFIX so a restarted job resumes"
            )
    if spec is not None:
        placeholders = sorted(i for i in vertex.template_images(spec) if PLACEHOLDER_PROJECT in i)
        if placeholders:
            msg = (f"the template runs the placeholder image {placeholders[0]}; build the image "
                   "(cloudbuild.yaml) and compile with --image or DOLLY_LORA_IMAGE")
            if not dry_run:
                raise InputError(msg)
            _note(f"warning: {msg}")


def _vertex_job(opts: Options) -> tuple[Any, dict[str, Any], dict[str, str], Any]:
    """(settings, parameter values, labels, resolved) of a Vertex submission, every check
    passed."""
    from cli import vertex

    settings = _vertex_settings(opts)
    r = _resolve(opts, "vertex")
    values = _preflight(opts, r)
    if not opts.dry_run:  # in a second, before build/ is written and aiplatform imported
        from cli.failures import require_credentials

        require_credentials("Vertex AI")
    settings = settings.model_copy(update={"template": _template(opts, r)})
    _experiment_note(settings, r)
    _checked_template(settings, values, opts.dry_run)
    labels = vertex.job_labels(settings, vertex.template_commit(settings.template))
    return settings, values, labels, r


def _experiment_note(settings: Any, r: Any) -> None:
    """--experiment: the SDK associates the pipeline run with the experiment at submit, and the
    steps get its name (vertex_experiment) to log their numbers to it with trackers=vertex."""
    trackers = str(r.params["trackers"])
    if settings.experiment and "vertex" not in trackers.split(","):
        _note(f"note: the run joins experiment {settings.experiment}; for evaluate to log its "
              f"metrics there too, add vertex to the trackers (--param trackers={trackers},vertex)"
              .replace("=,", "="))


def _cost_estimate(opts: Options, r: Any) -> Any:
    """Print the cost estimate (stderr) and refuse above --max-cost; None when there is no
    estimate for this run and no --max-cost asks for one."""
    from components.common.errors import InputError
    from planning import cost

    try:
        t = r.settings.training
        est = cost.estimate(r.params, r.profile.name, t.machine_type, t.accelerator_type,
                            t.accelerator_count, t.capacity.value,
                            price=r.overrides.get("gpu_hourly_usd"))
    except InputError as exc:
        if opts.max_cost is not None:
            raise InputError(f"--max-cost needs a cost estimate, and there is none: {exc}") from None
        _note(f"no cost estimate: {exc}")
        return None
    for line in est.lines():
        typer.echo(line, err=True)
    cost.check_max_cost(est, opts.max_cost)
    cost.check_memory(est)
    return est


def _run_vertex(opts: Options, wait: bool) -> None:
    from cli import vertex

    settings, values, labels, r = _vertex_job(opts)
    est = _cost_estimate(opts, r)
    spec = vertex.load_template(settings.template)
    declared = (spec or {}).get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    if est is not None and "cost_estimate" in declared:  # the report shows it next to actuals
        values = {**values, "cost_estimate": est.as_json()}
    if opts.dry_run:
        out = vertex.dry_run(settings, values, labels, r.params["base_model"])
        if est is not None:
            out["cost_estimate"] = json.loads(est.as_json())
        print(json.dumps(out, indent=2, sort_keys=True))
        return
    job = vertex.build_job(settings, values, labels)
    link = vertex.submit(job, settings)
    print(link)
    if wait:
        try:
            vertex.wait(job, echo=lambda m: typer.echo(m, err=True))
        except RuntimeError as exc:
            _fail(str(exc), code=1)


def _run_kfp(opts: Options, host: str) -> None:
    from cli import vertex

    vertex.check_kfp_host(host)
    r = _resolve(opts, "kfp")
    values = _preflight(opts, r)
    # A named template is only read and checked; the default one may be (re)compiled into
    # build/, so that waits until the host has answered.
    named = Path(_template(opts, r)) if opts.template else None
    client = vertex.kfp_client(host)  # answers, or one line naming the host
    template = named or Path(_template(opts, r))
    vertex.check_parameters(vertex.load_template(str(template)), values)
    run_id = vertex.submit_kfp(
        host, template, values, run_name=opts.run_id or default_run_id(),
        experiment=opts.experiment, enable_caching=opts.cache,
        service_account=opts.service_account, client_factory=lambda host: client,
    )
    print(f"{host.rstrip('/')}/#/runs/details/{run_id}")


def _guard(fn: Any, service: str = "Google Cloud") -> Any:
    """Run a command body; bad input, missing credentials and unreachable services become one
    line on stderr and exit 2 (`cli.failures` names what is missing and how to provide it)."""
    from components.common.errors import InputError

    try:
        return fn()
    except InputError as exc:
        _fail(str(exc))
    except typer.Exit:
        raise
    except Exception as exc:
        from cli.failures import problem

        message = problem(exc, service)
        if message is None:
            raise
        _fail(message)


def _location(opts: Options) -> tuple[str, str]:
    from cli.vertex import VertexSettings

    s = VertexSettings.build(project=opts.project, region=opts.region,
                             pipeline_root=opts.pipeline_root or "gs://unused-for-this-command")
    return s.project, s.region


@app.command("upload")
def upload(
    ctx: typer.Context,
    repo: Annotated[str, typer.Option(help="Artifact Registry KFP repository.",
                                      envvar="DOLLY_LORA_KFP_REPO")] = "dolly-lora",
    tag: Annotated[list[str] | None, typer.Option(help="Extra tag (repeat).")] = None,
) -> None:
    """Push the compiled template to Artifact Registry, tagged with the git commit and latest."""
    opts: Options = ctx.obj

    def body() -> None:
        from cli import vertex
        from cli.failures import require_credentials, require_reachable

        project, region = _location(opts)
        require_credentials("Artifact Registry")  # in a second, before kfp's import
        require_reachable(f"https://{region}-kfp.pkg.dev", "Artifact Registry")
        template = Path(_template(opts, _resolve(opts, "vertex")))
        commit = vertex.template_commit(str(template))
        tags = [commit, "latest", *(tag or [])]
        package, version = vertex.upload_template(template, project, region, repo, tags)
        print(f"https://{region}-kfp.pkg.dev/{project}/{repo}/{package}/{commit}")
        _note(f"uploaded {package} version {version} tags {', '.join(tags)}")

    _guard(body, "Artifact Registry")


@schedule_app.command("create")
def schedule_create(
    ctx: typer.Context,
    cron: Annotated[str, typer.Option(help="Cron, 5 fields, e.g. '0 3 * * 1' (Mon 03:00).")],
    time_zone: Annotated[str, typer.Option(help="IANA time zone, e.g. Europe/Paris.")] = "",
    max_runs: Annotated[int | None, typer.Option(min=1, help="Stop after N runs.")] = None,
    max_concurrent: Annotated[int, typer.Option(min=1, help="Runs at once.")] = 1,
    name: Annotated[str, typer.Option(help="Schedule display name.")] = "dolly-lora-schedule",
) -> None:
    """Run the pipeline on a cron schedule (same options as a one-off submit)."""
    opts: Options = ctx.obj

    def body() -> None:
        from cli import schedules, vertex

        cron_spec = schedules.schedule_cron(cron, time_zone)
        settings, values, labels, _ = _vertex_job(opts)
        labels = {**labels, "schedule": vertex.re.sub(r"[^a-z0-9_-]", "-", name.lower())[:63]}
        creds = vertex.dry_run_credentials() if opts.dry_run else None
        job = vertex.build_job(settings, values, labels, credentials=creds)
        request = schedules.create_request(
            job, name, labels, cron_spec, max_runs, max_concurrent, settings.service_account,
            settings.network, settings.project, settings.region,
        )
        if opts.dry_run:
            print(json.dumps({
                "method": "google.cloud.aiplatform.v1.ScheduleService.CreateSchedule",
                "request": vertex.request_json(request)}, indent=2, sort_keys=True))
            return
        print(schedules.create(request, settings.region, credentials=job.credentials))

    _guard(body, "Vertex AI")


@schedule_app.command("list")
def schedule_list(ctx: typer.Context) -> None:
    """List the project's pipeline schedules in the region."""
    opts: Options = ctx.obj

    def body() -> None:
        from cli import schedules
        from cli.failures import require_credentials

        location = _location(opts)
        require_credentials("Vertex AI")
        for row in schedules.list_schedules(*location):
            print(json.dumps(row))

    _guard(body, "Vertex AI")


def _schedule_action(ctx: typer.Context, schedule_id: str, action: str) -> None:
    opts: Options = ctx.obj

    def body() -> None:
        from cli import schedules
        from cli.failures import require_credentials

        project, region = _location(opts)
        if opts.dry_run:  # the request it would send; no credentials, nothing sent
            print(json.dumps(schedules.action_request(action, schedule_id, project, region),
                             indent=2, sort_keys=True))
            return
        require_credentials("Vertex AI")  # in a second, before aiplatform's 17 s import
        name = getattr(schedules, action)(schedule_id, project, region)
        print(f"{action}: {name}")

    _guard(body, "Vertex AI")


@schedule_app.command("pause")
def schedule_pause(ctx: typer.Context, schedule_id: str) -> None:
    """Pause a schedule (id or full resource name)."""
    _schedule_action(ctx, schedule_id, "pause")


@schedule_app.command("resume")
def schedule_resume(ctx: typer.Context, schedule_id: str) -> None:
    """Resume a paused schedule."""
    _schedule_action(ctx, schedule_id, "resume")


@schedule_app.command("delete")
def schedule_delete(ctx: typer.Context, schedule_id: str) -> None:
    """Delete a schedule."""
    _schedule_action(ctx, schedule_id, "delete")


@app.command("params")
def list_params() -> None:
    """List every pipeline parameter with its default and the embedded default's value."""
    from components.common.config import parameter_defaults, parameter_help
    from planning.profiles import LOCAL_PROFILE, PROFILES

    helps = parameter_help()
    embedded = PROFILES[LOCAL_PROFILE].params
    for name, default in parameter_defaults().items():
        local = f"  [local: {embedded[name]!r}]" if name in embedded else ""
        typer.echo(f"{name} = {default!r}{local}\n    {helps[name]}")


def main() -> None:
    _load_dotenv()  # before parsing, so .env feeds the options' environment variables
    app(prog_name="submit", args=sys.argv[1:])


if __name__ == "__main__":
    main()
