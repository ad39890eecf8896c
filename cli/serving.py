"""`submit deploy | undeploy | predict | serve`: serve what the pipeline trained.

    uv run submit --project P --region us-central1 deploy MODEL_ID@3 [--endpoint ID] --dry-run
    uv run submit --project P --region us-central1 undeploy --endpoint ID [--delete-endpoint]
    uv run submit --project P --region us-central1 predict --endpoint ID "What is LoRA?"
    uv run submit serve runs/RUN_ID                    # OpenAI-compatible server on the merged model
    uv run submit predict --local http://127.0.0.1:8000 "What is LoRA?"

Why a module of its own: the serving commands share nothing with the pipeline submission but
the top-level options; `cli.submit` registers them (`register(app)`). Heavy imports (aiplatform,
transformers) happen inside the commands, so `--help` and bad-input errors stay fast.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Annotated, Any

import typer

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
MERGED_ARTIFACT = "export.merged"
REGISTERED_ARTIFACT = "register-model.registered_model"


def _opts(ctx: typer.Context) -> Any:
    return ctx.obj


def _run(fn: Any) -> Any:
    """InputError -> one line, exit 2; a refused or failed service call -> one line, exit 1."""
    from cli.submit import _fail, _guard
    from components.deploy.deploy import DeployFailed

    try:
        return _guard(fn)
    except (DeployFailed, ServerError) as exc:
        _fail(str(exc), code=1)


class ServerError(RuntimeError):
    """The server answered, but with an error."""


def _location(ctx: typer.Context) -> tuple[str, str]:
    from cli.submit import _location as location

    return location(_opts(ctx))


def deploy(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(
        help="Registered model version: MODEL_ID@VERSION or projects/P/locations/R/models/"
        "MODEL_ID@VERSION (MODEL_ID alone: its default version).")],
    endpoint: Annotated[str, typer.Option(
        help="Endpoint ID or resource name to deploy to; what it serves now keeps serving until "
        "the new version is healthy, then is undeployed. Default: create an endpoint.")] = "",
    endpoint_name: Annotated[str, typer.Option(
        help="Display name of a created endpoint.")] = "dolly-lora-endpoint",
    min_replicas: Annotated[int, typer.Option(help="Fewest serving machines.")] = 1,
    max_replicas: Annotated[int, typer.Option(help="Most serving machines.")] = 1,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the exact requests as JSON; send nothing.")] = False,
) -> None:
    """Deploy a registered model version on g2-standard-8 + 1 NVIDIA L4 (costs money every hour
    until `submit undeploy`)."""

    def body() -> None:
        from components.common.serving import container_spec
        from components.deploy import deploy as d
        from pipelines.machines import SERVING_MACHINE
        from planning.prices import hourly_price

        opts = _opts(ctx)
        project, region = _location(ctx)
        target = d.DeployTarget(
            project=project, region=region, model=model, endpoint=endpoint,
            endpoint_display_name=endpoint_name, min_replicas=min_replicas,
            max_replicas=max_replicas, service_account=opts.service_account,
            **SERVING_MACHINE.machine_spec(),
        )
        target.model_version  # noqa: B018 - checks the name (and its region) before anything
        target.endpoint_name  # noqa: B018
        # what an endpoint costs per replica for every hour it is deployed, answering or not
        cost = (hourly_price(SERVING_MACHINE.machine_type, "STANDARD") or 0.0) * min_replicas
        if dry_run or opts.dry_run:
            print(json.dumps({
                "requests": d.planned_requests(target),
                # Not a request: the container the register step gives every version it uploads
                # (the deployed version's own spec is read from the registry on a real run).
                "registered_serving_container": container_spec(
                    _default_serving_image(), "$(AIP_STORAGE_URI)",
                    _default_max_model_len()),
                "hourly_usd_while_deployed": round(cost, 2),
            }, indent=2))
            return
        record = d.deploy(target, echo=lambda m: typer.secho(m, err=True))
        print(json.dumps(record, indent=2))
        typer.secho(
            f"deployed: about ${cost:.2f}/h (on-demand, {SERVING_MACHINE.machine_type} + "
            f"{SERVING_MACHINE.accelerator_type}) until `submit undeploy --endpoint "
            f"{record['endpoint'].rsplit('/', 1)[-1]}`", fg=typer.colors.YELLOW, err=True)

    _run(body)


def _default_serving_image() -> str:
    from components.common.config import parameter_defaults

    return parameter_defaults()["serving_image"]


def _default_max_model_len() -> int:
    from components.common.config import parameter_defaults

    return parameter_defaults()["serving_max_model_len"]


def undeploy(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Option(help="Endpoint ID or resource name.")],
    model: Annotated[str, typer.Argument(
        help="Model version to undeploy (MODEL_ID@VERSION); default: everything deployed "
        "there.")] = "",
    delete_endpoint: Annotated[bool, typer.Option(
        "--delete-endpoint", help="Also delete the endpoint once nothing is deployed on it.")
    ] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Read the endpoint, print the requests; change nothing.")] = False,
) -> None:
    """Undeploy from an endpoint (stops the hourly cost); optionally delete the endpoint."""

    def body() -> None:
        from components.deploy import deploy as d

        project, region = _location(ctx)
        requests = d.undeploy(project, region, endpoint, model, delete_endpoint,
                              dry_run=dry_run or _opts(ctx).dry_run,
                              echo=lambda m: typer.secho(m, err=True))
        print(json.dumps({"requests": requests}, indent=2))

    _run(body)


def predict(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="The user prompt (or give --file).")] = "",
    endpoint: Annotated[str, typer.Option(help="Vertex endpoint ID or resource name.")] = "",
    local: Annotated[str, typer.Option(
        "--local", help="URL of a local OpenAI-compatible server (`submit serve`), e.g. "
        f"http://{DEFAULT_HOST}:{DEFAULT_PORT}.")] = "",
    file: Annotated[str, typer.Option(
        "--file", help='JSONL of {"prompt": ...} (local or gs://); one JSON answer per line.')
    ] = "",
    max_tokens: Annotated[int, typer.Option(help="Tokens to generate at most.")] = 256,
    temperature: Annotated[float, typer.Option(help="0 = greedy, as the inference step.")] = 0.0,
    system_prompt: Annotated[str, typer.Option(help="Optional system message.")] = "",
) -> None:
    """Send chat-formatted prompts to a deployed endpoint or a local server; print the answers."""

    def body() -> None:
        from components.common.errors import InputError

        if bool(endpoint) == bool(local):
            raise InputError("give either --endpoint ID (Vertex) or --local URL (submit serve)")
        if bool(prompt) == bool(file):
            raise InputError('give either a prompt ("...") or --file prompts.jsonl')
        prompts = _prompts(file) if file else [prompt]
        if local:
            answers = [ask_local(local, p, max_tokens, temperature, system_prompt)
                       for p in prompts]
        else:
            answers = ask_vertex(ctx, endpoint, prompts, max_tokens, temperature, system_prompt)
        if file:
            for p, a in zip(prompts, answers, strict=True):
                print(json.dumps({"prompt": p, "response": a}))
        else:
            print(answers[0])

    _run(body)


def _prompts(uri: str) -> list[str]:
    from components.inference.infer import load_prompts

    return load_prompts(uri, [])


def ask_local(url: str, prompt: str, max_tokens: int, temperature: float = 0.0,
              system_prompt: str = "", timeout: float = 600.0) -> str:
    """One chat completion from an OpenAI-compatible server (no `model`: the server serves
    one)."""
    import httpx

    from components.common.errors import InputError
    from components.common.serving import chat_answer, chat_messages, openai_chat_request

    body = openai_chat_request(chat_messages(prompt, system_prompt), max_tokens, temperature)
    target = url.rstrip("/") + "/v1/chat/completions"
    try:
        response = httpx.post(target, json=body, timeout=timeout)
    except httpx.ConnectError:
        raise InputError(f"nothing answers at {url}; start a server with `submit serve RUN_DIR`"
                         ) from None
    except httpx.HTTPError as exc:
        raise ServerError(f"{target}: {exc.__class__.__name__}: {exc}") from None
    if response.status_code != 200:
        raise ServerError(f"{target} answered {response.status_code}: {response.text[:300]}")
    return chat_answer(response.json())


def ask_vertex(ctx: typer.Context, endpoint: str, prompts: list[str], max_tokens: int,
               temperature: float, system_prompt: str) -> list[str]:
    """One Vertex predict call per prompt, in the chat format of Model Garden's vLLM container."""
    from google.api_core import exceptions
    from google.cloud import aiplatform_v1 as v1
    from google.protobuf import json_format, struct_pb2

    from components.common.errors import InputError
    from components.common.serving import chat_answer, chat_messages, vertex_chat_instance
    from components.deploy.deploy import endpoint_resource_name

    project, region = _location(ctx)
    name = endpoint_resource_name(endpoint, project, region)
    client = v1.PredictionServiceClient(
        client_options={"api_endpoint": f"{region}-aiplatform.googleapis.com"})
    answers = []
    for p in prompts:
        instance = vertex_chat_instance(chat_messages(p, system_prompt), max_tokens, temperature)
        try:
            response = client.predict(
                endpoint=name, instances=[json_format.ParseDict(instance, struct_pb2.Value())])
        except exceptions.NotFound:
            raise InputError(f"endpoint {name} does not exist (or serves nothing); deploy with "
                             "`submit deploy MODEL_ID@VERSION`") from None
        except exceptions.GoogleAPICallError as exc:
            raise ServerError(f"{name}: {exc.message or exc}") from None
        predictions = type(response).to_dict(response)["predictions"]
        answers.append(chat_answer({"predictions": predictions}))
    return answers


def find_merged_model(run_dir: Path) -> Path:
    """The merged model folder of a local run (its summary.json names it), or `run_dir` itself
    when it is a model folder."""
    from components.common.errors import InputError

    if not run_dir.exists():
        raise InputError(f"{run_dir} does not exist; give a run folder (runs/RUN_ID) or a model "
                         "folder")
    if (run_dir / "config.json").is_file() and any(run_dir.glob("*.safetensors")):
        return run_dir
    summary = run_dir / "summary.json"
    if summary.is_file():
        path = json.loads(summary.read_text()).get("artifacts", {}).get(MERGED_ARTIFACT)
        if path and (Path(path) / "config.json").is_file():
            return Path(path)
    found = sorted(run_dir.glob("pipeline/*/export/merged/config.json"))
    if found:
        return found[-1].parent
    raise InputError(
        f"no merged model in {run_dir}: the export step runs only when the tuned model passes "
        "the gate; see summary.json (steps, eval), or give a model folder"
    )


def default_served_name(run_dir: Path, model_dir: Path) -> str:
    """The short name `submit serve` answers under: the registry model the run's register step
    named (its record), else the one it would name for the merged model's base model
    (`export.json`), else for the folder. As vLLM's --served-model-name: an OpenAI client
    gets a name it can send, not a path on this machine."""
    from components.register.register import display_name_for

    summary = run_dir / "summary.json"
    if summary.is_file():
        record = json.loads(summary.read_text()).get("artifacts", {}).get(REGISTERED_ARTIFACT)
        if record and Path(record).is_file():
            name = json.loads(Path(record).read_text()).get("display_name")
            if name:
                return str(name)
    export = model_dir / "export.json"
    base = json.loads(export.read_text()).get("base_model") if export.is_file() else None
    return display_name_for(base or model_dir.name)


def check_port_free(host: str, port: int) -> None:
    from components.common.errors import InputError

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise InputError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another "
                             "--port or stop what uses it") from None


def serve(
    run_dir: Annotated[Path, typer.Argument(
        help="A local run folder (runs/RUN_ID, after `submit --local`) or a model folder.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(help="Port to listen on.")] = DEFAULT_PORT,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:0 ...")] = "auto",
    served_model_name: Annotated[str, typer.Option(
        help="Model name the server answers under (/v1/models, a request's `model`). Default: "
        "the registry model name, e.g. dolly-lora-gemma-3-1b-it.")] = "",
) -> None:
    """Serve the run's merged model over an OpenAI-compatible HTTP API (`transformers serve`):
    POST /v1/chat/completions, GET /v1/models, GET /health."""

    def body() -> None:
        model_dir = find_merged_model(run_dir)
        name = served_model_name or default_served_name(run_dir, model_dir)
        check_port_free(host, port)
        start_server(model_dir, host, port, device, served_name=name)

    _run(body)


def pinned_model_manager(served_name: str, model_dir: Path) -> type:
    """transformers serve's ModelManager answering for `model_dir` under `served_name` (what
    vLLM's --served-model-name does; transformers serve has no such flag). Given as
    `force_model`, the name is what /v1/models lists and the only `model` a request may name;
    another gets 400 "Server is pinned to '<name>'". The weights are read from the folder."""
    from transformers.cli.serving.model_manager import ModelManager

    weights = str(model_dir.resolve())

    def resolve(name: str) -> str:
        return weights if name == served_name else name

    class PinnedModelManager(ModelManager):
        def process_model_name(self, model_id: str) -> str:  # type: ignore[override]
            # The name is not a Hub repo: no '@main' revision appended.
            return model_id if model_id == served_name else super().process_model_name(model_id)

        def _load_processor(self, model_id_and_revision: str, *args: Any, **kwargs: Any) -> Any:
            return super()._load_processor(resolve(model_id_and_revision), *args, **kwargs)

        def _load_model(self, model_id_and_revision: str, *args: Any, **kwargs: Any) -> Any:
            return super()._load_model(resolve(model_id_and_revision), *args, **kwargs)

    return PinnedModelManager


def start_server(model_dir: Path, host: str, port: int, device: str = "auto",
                 served_name: str = "") -> None:
    """transformers' own server, pinned to the model folder under `served_name`, offline. fp32
    on CPU: the arithmetic the inference step uses there (bf16 is far slower on CPU), bf16 on a
    GPU."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: nothing to download
    import torch
    from transformers.cli.serve import Serve
    from transformers.cli.serving import model_manager

    served_name = served_name or default_served_name(model_dir, model_dir)
    cuda = torch.cuda.is_available() and device != "cpu"
    typer.secho(f"serving {model_dir} as model {served_name} at http://{host}:{port}/v1 "
                f"(OpenAI-compatible); ask it: submit predict --local http://{host}:{port} "
                "\"...\"", err=True)
    # Serve builds its ModelManager from this module when called: the pinned one, for this call.
    original = model_manager.ModelManager
    model_manager.ModelManager = pinned_model_manager(served_name, model_dir)
    try:
        Serve(force_model=served_name, host=host, port=port, device=device,
              dtype="bfloat16" if cuda else "float32", log_level="warning")
    finally:
        model_manager.ModelManager = original


def register(app: typer.Typer) -> None:
    """Add the serving commands to `submit`."""
    app.command("deploy")(deploy)
    app.command("undeploy")(undeploy)
    app.command("predict")(predict)
    app.command("serve")(serve)
