"""`submit deploy | undeploy | predict | serve`: serve what the pipeline trained.

    uv run submit --project P --region us-central1 deploy MODEL_ID@3 [--endpoint ID] --dry-run
    uv run submit --project P --region us-central1 undeploy --endpoint ID [--delete-endpoint]
    uv run submit --project P --region us-central1 predict --endpoint ID "What is LoRA?"
    uv run submit serve runs/RUN_ID                    # OpenAI-compatible server on the merged model
    uv run submit predict --local http://127.0.0.1:8000 "What is LoRA?"

Why a module of its own: the serving commands share nothing with the pipeline submission but
the top-level options (`cli.app`). Heavy imports (aiplatform,
transformers) happen inside the commands, so `--help` and bad-input errors stay fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.app import Options, app, fail, guard, location, options
from cli.local_server import check_port_free, default_served_name, find_merged_model, start_server

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def _opts(ctx: typer.Context) -> Options:
    return options(ctx)


def _run(fn: Any) -> Any:
    """InputError -> one line, exit 2; a refused or failed service call -> one line, exit 1."""
    from components.deploy.deploy import DeployFailed

    def body() -> Any:
        try:  # before guard, which would read a timeout inside as "unreachable"
            return fn()
        except (DeployFailed, ServerError) as exc:
            fail(str(exc), code=1)

    return guard(body)


class ServerError(RuntimeError):
    """The server answered, but with an error."""


def _location(ctx: typer.Context) -> tuple[str, str]:
    return location(_opts(ctx))


def deploy(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(
        help="Registered model version: MODEL_ID@VERSION or projects/P/locations/R/models/"
        "MODEL_ID@VERSION (MODEL_ID alone: its default version).")],
    endpoint: Annotated[str, typer.Option(
        help="Endpoint ID or resource name to deploy to; what it serves now keeps serving until "
        "the new version is healthy, then is undeployed. Default: this project's endpoint "
        "(label source=dolly-lora, or --endpoint-name), created when there is none.")] = "",
    endpoint_name: Annotated[str, typer.Option(
        help="Display name of a created endpoint.")] = "dolly-lora-endpoint",
    min_replicas: Annotated[int, typer.Option(help="Fewest serving machines.")] = 1,
    max_replicas: Annotated[int, typer.Option(help="Most serving machines.")] = 1,
    ttl_hours: Annotated[float, typer.Option(
        help="Undeploy after this many hours, by a one-run Vertex schedule (needs "
        "--pipeline-root and --image); 0 = until `submit undeploy`.")] = 8.0,
    image: Annotated[str, typer.Option(
        help="The project's image, which the TTL undeploy run uses.",
        envvar="DOLLY_LORA_IMAGE")] = "",
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Read the project's endpoints, print the exact requests as JSON; "
        "change nothing.")] = False,
) -> None:
    """Deploy a registered model version on g2-standard-8 + 1 NVIDIA L4 (costs money every hour
    until the TTL or `submit undeploy`)."""

    def body() -> None:
        from components.common.serving import container_spec
        from components.deploy import deploy as d  # the step's public API (its __all__)
        from pipelines.machines import SERVING_MACHINE
        from planning.prices import hourly_price

        opts = _opts(ctx)
        project, region = _location(ctx)
        target = d.DeployTarget(
            project=project, region=region, model=model, endpoint=endpoint,
            endpoint_display_name=endpoint_name, min_replicas=min_replicas,
            max_replicas=max_replicas, service_account=opts.service_account,
            ttl_hours=ttl_hours, image=image, pipeline_root=opts.pipeline_root or "",
            **SERVING_MACHINE.machine_spec(),
        )
        target.model_version  # noqa: B018 - checks the name (and its region) before anything
        target.endpoint_name  # noqa: B018
        # what an endpoint costs per replica for every hour it is deployed, answering or not
        cost = (hourly_price(SERVING_MACHINE.machine_type, "STANDARD") or 0.0) * min_replicas
        d.check_ttl(target)  # a TTL without root or image: refused before any read
        if dry_run or opts.dry_run:
            reuse = _endpoint_to_reuse(d, target, region)
            print(json.dumps({
                "requests": d.planned_requests(target, reuse),
                # Not a request: the container the register step gives every version it uploads
                # (the deployed version's own spec is read from the registry on a real run).
                "registered_serving_container": container_spec(
                    _default_serving_image(), "$(AIP_STORAGE_URI)",
                    _default_max_model_len()),
                "hourly_usd_while_deployed": round(cost, 2),
                "most_usd_until_ttl": round(cost * ttl_hours, 2) if ttl_hours else None,
            }, indent=2))
            return
        record = d.deploy(target, echo=lambda m: typer.secho(m, err=True))
        print(json.dumps(record, indent=2))
        typer.secho(
            f"deployed: about ${cost:.2f}/h (on-demand, {SERVING_MACHINE.machine_type} + "
            f"{SERVING_MACHINE.accelerator_type}) until "
            + (f"{record['ttl_until']} (TTL) or " if record.get("ttl_until") else "")
            + f"`submit undeploy --endpoint {record['endpoint'].rsplit('/', 1)[-1]}`",
            fg=typer.colors.YELLOW, err=True)

    _run(body)


def _endpoint_to_reuse(d: Any, target: Any, region: str) -> Any:
    """--dry-run: the endpoint deploy would use (reads only); without credentials, planned as
    if the project had none, and said so."""
    from google.auth.exceptions import DefaultCredentialsError

    try:
        clients = d.Clients.for_region(region)
        return (d.check_endpoint(target.endpoint_name, region, clients) if target.endpoint
                else d.find_endpoint(target, clients))
    except DefaultCredentialsError:
        typer.secho("note: no Google credentials, so this project's endpoints were not read; "
                    "planned as if it had none (a real deploy reuses its endpoint)",
                    fg=typer.colors.YELLOW, err=True)
        return None


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
        from components.deploy import deploy as d  # the step's public API (its __all__)

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
        "--file", help='JSONL of prompts ({"prompt"}, {"instruction", "context"} or '
        '{"messages"} ending on a user turn; local or gs://); one JSON answer per line.')
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
    from components.common.jsonl import load_prompts

    return load_prompts(uri, [])


def ask_local(url: str, prompt: str, max_tokens: int, temperature: float = 0.0,
              system_prompt: str = "", timeout: float = 600.0) -> str:
    """One chat completion from an OpenAI-compatible server (no `model`: the server serves
    one)."""
    import httpx

    from components.common.errors import InputError
    from components.common.serving import chat_answer, chat_messages, openai_chat_request

    if not url.startswith(("http://", "https://")):
        raise InputError(f"{url} is not an http:// or https:// URL; write e.g. "
                         f"http://{url.removeprefix('//')}")
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


app.command("deploy")(deploy)
app.command("undeploy")(undeploy)
app.command("predict")(predict)
app.command("serve")(serve)
