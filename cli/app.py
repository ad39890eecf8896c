"""The `submit` application: the typer app, the top-level options every command shares, and the
helpers that turn bad input and unreachable services into one line.

Command groups (`cli.run`, `cli.schedule`, `cli.serving`, `cli.params`) add themselves to `app`;
`cli.submit` imports them all. Heavy imports (kfp, torch, google.cloud.aiplatform: 17-19 s)
happen inside the commands that need them, so `--help` answers at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer

from pipelines.compiler import DEFAULT_TEMPLATE, RUN_ID_PREFIX

app = typer.Typer(
    add_completion=False,
    no_args_is_help=False,
    help="Run the Dolly LoRA pipeline locally (KFP local runner), on Vertex AI Pipelines, or on "
    "a Kubeflow Pipelines host.",
)
T = TypeVar("T")


def fail(message: str, code: int = 2) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def note(message: str) -> None:
    typer.secho(message, fg=typer.colors.YELLOW, err=True)


def guard(fn: Callable[[], T], service: str = "Google Cloud") -> T:
    """Run a command body; bad input, missing credentials and unreachable services become one
    line on stderr and exit 2 (`cli.failures` names what is missing and how to provide it)."""
    from components.common.errors import InputError

    try:
        return fn()
    except InputError as exc:
        fail(str(exc))
    except typer.Exit:
        raise
    except Exception as exc:
        from cli.failures import problem

        message = problem(exc, service)
        if message is None:
            raise
        fail(message)


_DOTENV_READ: set[Path] = set()
# Other names a .env commonly sets for this project (the options' own come from `app`).
DOTENV_KNOWN = ("WANDB_API_KEY", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_MODE", "HF_TOKEN",
                "HF_HUB_OFFLINE", "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN",
                "GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST")


def load_dotenv() -> None:
    """Options and secrets from a git-ignored .env; the environment wins. A line that does not
    parse is named once (file, line, what is wrong; never its value) instead of python-dotenv's
    own warning, which names neither and comes once per load."""
    import logging

    from dotenv import dotenv_values

    path = Path.cwd() / ".env"
    if path in _DOTENV_READ or not path.is_file():
        return
    _DOTENV_READ.add(path)
    from cli.dotenv_check import dotenv_problems

    for problem in dotenv_problems(path, known_env_names()):
        note(f"warning: {problem}")
    quiet = logging.getLogger("dotenv.main")
    level, quiet.level = quiet.level, logging.CRITICAL
    try:
        values = dotenv_values(path, interpolate=True)
    finally:
        quiet.setLevel(level)
    for key, value in values.items():
        if value is not None and key.isidentifier():
            os.environ.setdefault(key, value)


def known_env_names() -> set[str]:
    """Every environment variable a `submit` option or a setting reads."""
    from typing import get_args

    from pipelines.settings import ENV_IMAGE, ENV_PROFILE, ENV_TRAINING

    names = {*DOTENV_KNOWN, ENV_IMAGE, ENV_PROFILE, *ENV_TRAINING}
    for value in globals().values():
        for meta in get_args(value)[1:] if get_args(value) else ():
            env = getattr(meta, "envvar", None)
            names.update([env] if isinstance(env, str) else env or [])
    return names


# The top-level options, declared once. Every Vertex option also comes from an environment
# variable or the .env; options before a subcommand apply to it (`submit --project P schedule
# list`).
LocalOpt = Annotated[bool, typer.Option("--local", help="Run with KFP's local runner on this "
                                        "machine.")]
ParamOpt = Annotated[list[str] | None, typer.Option(
    "--param", "-p", help="Pipeline parameter override, name=value (repeat).")]
RealDefaultsOpt = Annotated[bool, typer.Option(
    "--real-defaults", help="Locally, start from the real job's defaults (Gemma 3 1B, Dolly-15k "
    "from the hub) instead of the embedded tiny default.")]
RunIdOpt = Annotated[str | None, typer.Option(
    help=f"Name of this run / Vertex job id (default: {RUN_ID_PREFIX}-<timestamp>).")]
OutputDirOpt = Annotated[Path, typer.Option(
    help="Where local runs write their outputs and summary.json.")]
ProjectOpt = Annotated[str | None, typer.Option(
    help="Google Cloud project.", envvar=["DOLLY_LORA_PROJECT", "GOOGLE_CLOUD_PROJECT"])]
RegionOpt = Annotated[str | None, typer.Option(
    help="Vertex AI region, e.g. us-central1.",
    envvar=["DOLLY_LORA_REGION", "GOOGLE_CLOUD_REGION"])]
PipelineRootOpt = Annotated[str | None, typer.Option(
    help="gs:// folder for pipeline artifacts.", envvar="DOLLY_LORA_PIPELINE_ROOT")]
ServiceAccountOpt = Annotated[str, typer.Option(
    help="Service account the job runs as.", envvar="DOLLY_LORA_SERVICE_ACCOUNT")]
NetworkOpt = Annotated[str, typer.Option(
    help="VPC network to peer (projects/NUMBER/global/networks/NAME).",
    envvar="DOLLY_LORA_NETWORK")]
LabelOpt = Annotated[list[str] | None, typer.Option(
    "--label", help="Job label key=value (repeat, or comma-separated in the env var).",
    envvar="DOLLY_LORA_LABELS")]
ExperimentOpt = Annotated[str, typer.Option(
    help="Vertex AI experiment to record the run in.", envvar="DOLLY_LORA_EXPERIMENT")]
CacheOpt = Annotated[bool | None, typer.Option(
    "--cache/--no-cache", help="Turn step caching on/off for every task (default: as "
    "compiled).", envvar="DOLLY_LORA_CACHING")]
TemplateOpt = Annotated[str | None, typer.Option(
    help="Compiled YAML or Artifact Registry template URL "
    f"(https://REGION-kfp.pkg.dev/PROJECT/REPO/PACKAGE/TAG) [{DEFAULT_TEMPLATE}].",
    envvar="DOLLY_LORA_TEMPLATE")]
HfSecretOpt = Annotated[str, typer.Option(
    help="Secret Manager name of the HF token (projects/P/secrets/NAME).",
    envvar="DOLLY_LORA_HF_TOKEN_SECRET")]
WandbSecretOpt = Annotated[str, typer.Option(
    help="Secret Manager name of the W&B API key.", envvar="DOLLY_LORA_WANDB_KEY_SECRET")]
MlflowSecretOpt = Annotated[str, typer.Option(
    help="Secret Manager name of the MLflow tracking token (MLFLOW_TRACKING_TOKEN).",
    envvar="DOLLY_LORA_MLFLOW_TOKEN_SECRET")]
WaitOpt = Annotated[bool, typer.Option(
    "--wait", help="Follow the job until it ends; exit 1 if it failed.")]
DryRunOpt = Annotated[bool, typer.Option(
    "--dry-run", help="Print the exact request as JSON; send nothing, need no credentials. "
    "With --local: run every check on the parameters and data, write nothing.")]
KfpHostOpt = Annotated[str | None, typer.Option(
    help="Submit to this Kubeflow Pipelines endpoint with kfp.Client instead of Vertex.",
    envvar="KFP_HOST")]
CheckpointOpt = Annotated[str | None, typer.Option(
    help="gs://BUCKET/PREFIX for resumable fine-tune checkpoints (the checkpoint_uri "
    "parameter; STORAGE_EMULATOR_HOST for an emulator). Locally, rerun with the same "
    "--run-id to resume; on Vertex a restarted worker resumes by itself.",
    envvar="DOLLY_LORA_CHECKPOINT_URI")]
PublicModelOpt = Annotated[bool, typer.Option(
    "--public-model", help="The Hugging Face base model needs no token: submit without "
    "--hf-token-secret.", envvar="DOLLY_LORA_PUBLIC_MODEL")]
TensorboardOpt = Annotated[str, typer.Option(
    help="Vertex TensorBoard the fine-tune job streams its curves to "
    "(projects/P/locations/L/tensorboards/ID); recompiles the default template with it.",
    envvar="DOLLY_LORA_TENSORBOARD")]
BaseOutputDirOpt = Annotated[str, typer.Option(
    help="gs:// folder for the fine-tune job's outputs; Vertex writes the TensorBoard logs "
    "under it (needed with --tensorboard).", envvar="DOLLY_LORA_BASE_OUTPUT_DIR")]
TimeoutOpt = Annotated[str, typer.Option(
    help="Every GPU job's timeout, e.g. 21600s, instead of each step's own deadline from the "
    "cost estimate (3 x its time + start-up, at least 30 min); recompiles the default template.",
    envvar="DOLLY_LORA_TRAIN_TIMEOUT")]
VerboseOpt = Annotated[bool, typer.Option(
    "--verbose", help="--local: also print every step's output and kfp's logs as they "
    "come (always in <output-dir>/<run-id>/steps.log).")]
ProfileOpt = Annotated[str | None, typer.Option(
    help="Profile (planning/profiles.py PROFILES): model, machine, GPUs, precision, batch "
    "and sequence together: default, 4b-qlora, 12b-qlora, 4b-lora-4xl4, "
    "12b-lora-fsdp-4xl4, embedded. The default template is recompiled for it; --param still "
    "overrides. Locally: the profile's parameters instead of the embedded default.",
    envvar="DOLLY_LORA_PROFILE")]
ResumeOpt = Annotated[str | None, typer.Option(
    "--resume", help="Continue this earlier run from its checkpoints: on Vertex a pipeline job "
    "id (the new job takes its run name and checkpoint folder); with --local a run id in "
    "--output-dir (its own parameters; finished steps are skipped).")]
BatchOpt = Annotated[bool, typer.Option(
    "--batch", help="Run the whole DAG on one GPU VM as a Cloud Batch job (Spot by default); "
    "outputs under --pipeline-root.")]
BatchCapacityOpt = Annotated[str, typer.Option(
    "--capacity", help="--batch: SPOT (default, retried on preemption) or STANDARD (on demand).",
    envvar="DOLLY_LORA_BATCH_CAPACITY")]
ImageOpt = Annotated[str, typer.Option(
    help="The project's image, pinned (REPO@sha256:DIGEST); as DOLLY_LORA_IMAGE.")]
MaxCostOpt = Annotated[float | None, typer.Option(
    "--max-cost", min=0.0, help="Refuse (exit 2, nothing sent) when the estimated cost in "
    "USD is above this.", envvar="DOLLY_LORA_MAX_COST")]
SweepOpt = Annotated[list[str] | None, typer.Option(
    "--sweep", help="A training setting's values, field=v1,v2 (repeat: the grid of all "
    "combinations, one fine-tune each; the winner is chosen on the validation split).")]
SweepParallelismOpt = Annotated[int, typer.Option(
    "--sweep-parallelism", min=0, help="Sweep trials that run at once (0 = all; locally they "
    "run one after another).")]
SweepMaxTrialsOpt = Annotated[int, typer.Option(
    "--sweep-max-trials", min=1, help="Refuse a sweep grid of more trials than this.")]


@dataclass
class Options:
    """Every top-level option, built once by the `submit` callback and kept for subcommands."""

    local: bool = False
    params: list[str] = field(default_factory=list)
    real_defaults: bool = False
    run_id: str | None = None
    output_dir: Path = Path("runs")
    project: str | None = None
    region: str | None = None
    pipeline_root: str | None = None
    service_account: str = ""
    network: str = ""
    labels: list[str] = field(default_factory=list)
    experiment: str = ""
    cache: bool | None = None
    template: str | None = None
    hf_token_secret: str = ""
    wandb_key_secret: str = ""
    mlflow_token_secret: str = ""
    wait: bool = False
    dry_run: bool = False
    kfp_host: str | None = None
    checkpoint_uri: str | None = None
    public_model: bool = False
    tensorboard: str = ""
    base_output_dir: str = ""
    timeout: str = ""
    verbose: bool = False
    profile: str | None = None
    max_cost: float | None = None
    resume: str | None = None
    sweep: list[str] = field(default_factory=list)
    sweep_parallelism: int = 0
    sweep_max_trials: int = 32
    batch: bool = False
    capacity: str = "SPOT"
    image: str = ""

    def __post_init__(self) -> None:
        self.params, self.labels = list(self.params or []), list(self.labels or [])
        self.sweep = list(self.sweep or [])

    @property
    def secrets(self) -> dict[str, str]:
        """The secret-name flags, as the pipeline parameters they set."""
        return {k: v for k, v in (("hf_token_secret", self.hf_token_secret),
                                  ("wandb_api_key_secret", self.wandb_key_secret),
                                  ("mlflow_token_secret", self.mlflow_token_secret)) if v}

    @property
    def compile_overrides(self) -> dict[str, str]:
        """The flags that shape the compiled template."""
        return {k: v for k, v in (("tensorboard", self.tensorboard),
                                  ("base_output_directory", self.base_output_dir),
                                  ("timeout", self.timeout), ("image", self.image)) if v}


def options(ctx: typer.Context) -> Options:
    """The top-level options of this invocation (defaults when a test calls a command alone)."""
    return ctx.obj if isinstance(ctx.obj, Options) else Options()


def location(opts: Options) -> tuple[str, str]:
    """(project, region) from the options, checked; no pipeline root needed."""
    from cli.vertex import VertexSettings

    s = VertexSettings.build(project=opts.project, region=opts.region,
                             pipeline_root=opts.pipeline_root or "gs://unused-for-this-command")
    return s.project, s.region
