"""Sending a run to Vertex AI Pipelines or a Kubeflow Pipelines host: its settings resolved once
(`pipelines.settings.resolve`), every check passed, the template compiled or checked, the cost
estimated, then the request. `cli.run` and `cli.schedule` call it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from cli import kfp, templates
from cli.app import Options, fail, note
from cli.sweep_submit import sweep_cost, sweep_template, with_sweep, without_sweep
from components.common.errors import InputError
from pipelines.compiler import DEFAULT_TEMPLATE, default_run_id
from planning.profiles import DEFAULT_PROFILE

if TYPE_CHECKING:
    from pipelines.settings import Resolved


def resolved(opts: Options, target: str, run_name: str | None = None,
             default_profile: str = DEFAULT_PROFILE) -> Resolved:
    """`pipelines.settings.resolve` for this submission: the profile, the compile settings and
    parameters the flags set, over the settings the template to send was compiled with."""
    from pipelines.compiler import DEFAULT_TEMPLATES, read_stamp
    from pipelines.settings import resolve

    params: dict[str, Any] = {**opts.secrets, **({"checkpoint_uri": opts.checkpoint_uri}
                                                 if opts.checkpoint_uri else {})}
    if run_name is not None:
        params["run_name"] = run_name
    base = None
    if target != "local":
        if target == "vertex" and opts.experiment:  # the steps log to the run's experiment
            params["vertex_experiment"] = opts.experiment
        template = opts.template or str(DEFAULT_TEMPLATES[target])
        if not template.startswith("https://") and Path(template).is_file():
            base = without_sweep((read_stamp(Path(template)) or {}).get("settings"))
    return with_sweep(opts, lambda sweep: resolve(  # the sweep: a compile setting
        profile=opts.profile, settings={**opts.compile_overrides, **sweep, "target": target},
        params=params, param_pairs=opts.params, base=base, default_profile=default_profile))


def preflight(opts: Options, r: Resolved) -> dict[str, Any]:
    """Parameters the user set, checked, and the base model's access, before anything is
    compiled or sent (a gated model without a token would fail after the machines start)."""
    check_model_access(r.params["base_model"], r.params["hf_token_secret"], opts.public_model)
    check_remote_inputs(r.overrides)
    return r.overrides


def template(opts: Options, r: Resolved) -> str:
    """The template to send, checked against the code and the compile settings asked for: the
    default one is (re)compiled when missing or stale; a named one is refused when stale."""
    if path := sweep_template(r, opts.template):
        return path
    path, compiled = templates.resolve_template(opts.template, r)
    if compiled:
        note(compiled)
    return path


def vertex_settings(opts: Options) -> Any:
    from cli import vertex

    return vertex.VertexSettings.build(
        project=opts.project, region=opts.region, pipeline_root=opts.pipeline_root,
        service_account=opts.service_account, network=opts.network,
        labels=vertex.parse_labels(opts.labels), experiment=opts.experiment,
        enable_caching=opts.cache, template=opts.template or str(DEFAULT_TEMPLATE),
        job_id=opts.run_id or "",
    )


def checked_template(settings: Any, values: dict[str, Any], dry_run: bool) -> None:
    from components.common.images import PLACEHOLDER_PROJECT

    spec = templates.load_template(settings.template)
    templates.check_parameters(spec, values)
    if spec is not None and not values.get("checkpoint_uri"):
        strategy = templates.training_strategy(spec)
        if strategy in ("SPOT", "FLEX_START"):
            raise InputError(
                f"the template trains on {strategy} capacity, which can be preempted; pass "
                "--checkpoint-uri gs://BUCKET/PREFIX so a restarted job resumes"
            )
    if spec is not None:
        placeholders = sorted(i for i in templates.template_images(spec) if PLACEHOLDER_PROJECT in i)
        if placeholders:
            msg = (f"the template runs the placeholder image {placeholders[0]}; build the image "
                   "(cloudbuild.yaml) and compile with --image or DOLLY_LORA_IMAGE")
            if not dry_run:
                raise InputError(msg)
            note(f"warning: {msg}")


def vertex_job(opts: Options) -> tuple[Any, dict[str, Any], dict[str, str], Resolved]:
    """(settings, parameter values, labels, resolved) of a Vertex submission, every check
    passed."""
    from cli import vertex

    settings = vertex_settings(opts)
    run_name = None
    if opts.resume:
        from cli.resume import resume

        if not opts.dry_run:
            from cli.failures import require_credentials

            require_credentials("Vertex AI")
        cont = resume(opts.resume, settings.project, settings.region, opts.run_id or "",
                      opts.checkpoint_uri or "", opts.dry_run)
        opts.checkpoint_uri, run_name = cont.checkpoint_uri, cont.run_name
        note(f"resuming {cont.job}{f' ({cont.state})' if cont.state else ''}: run name "
             f"{cont.run_name}, checkpoints under {cont.checkpoint_uri}/{cont.run_name}/fine-tune/")
    r = resolved(opts, "vertex", run_name=run_name)
    values = preflight(opts, r)
    if not opts.dry_run:  # in a second, before build/ is written and aiplatform imported
        from cli.failures import require_credentials

        require_credentials("Vertex AI")
    machines = check_placement(settings.region, r)
    r = cost_estimate(opts, r)  # refuses above --max-cost before anything is written
    quota_note(settings, r, machines)
    settings = settings.model_copy(update={"template": template(opts, r)})
    _experiment_note(settings, r)
    checked_template(settings, values, opts.dry_run)
    show_data_key(str(r.params["dataset"]))
    labels = vertex.job_labels(settings, templates.template_commit(settings.template))
    return settings, values, labels, r


def show_data_key(dataset: str) -> str:
    """The dataset's content key as of now (the data-key step reads it again at every run, so
    prepare-data and the steps after it rerun only when the data changed)."""
    from components.prepare_data.data_key import data_key

    try:
        key = data_key(dataset)
    except Exception as exc:  # noqa: BLE001 - no credentials here is no reason to refuse
        key = f"not read here ({str(exc).strip().splitlines()[0][:160] if str(exc) else exc!r})"
    note(f"data key of {dataset}: {key}; resolved by the data-key step at each run, so "
         "prepare-data and what follows rerun only when the data changed")
    return key


def _experiment_note(settings: Any, r: Resolved) -> None:
    """--experiment: the SDK associates the pipeline run with the experiment at submit, and the
    steps get its name (vertex_experiment) to log their numbers to it with trackers=vertex."""
    trackers = str(r.params["trackers"])
    if settings.experiment and "vertex" not in trackers.split(","):
        note(f"note: the run joins experiment {settings.experiment}; for evaluate to log its "
              f"metrics there too, add vertex to the trackers (--param trackers={trackers},vertex)"
              .replace("=,", "="))


def cost_estimate(opts: Options, r: Resolved) -> Resolved:
    """Print the cost estimate (stderr), each GPU step's deadline and the worst case, and refuse
    above --max-cost. The default template gets the deadlines compiled in (`r.settings`); a
    named one is priced with its own. `r.estimate` stays None when there is no estimate for this
    run and no --max-cost asks for one."""
    from dataclasses import replace

    from pipelines.settings import run_estimate, with_deadlines
    from planning import cost

    try:
        est = run_estimate(r.settings, r.params, price=r.overrides.get("gpu_hourly_usd"))
    except InputError as exc:
        if opts.max_cost is not None:
            raise InputError(f"--max-cost needs a cost estimate, and there is none: {exc}") from None
        note(f"no cost estimate: {exc}")
        return r
    timeout = r.settings.training.timeout
    if opts.template:
        est = est.with_timeouts(templates.job_timeouts(templates.load_template(opts.template)))
    elif timeout:
        est = est.with_timeouts(dict.fromkeys(est.steps, float(timeout.rstrip("s"))))
    else:
        settings = with_deadlines(r.settings, est)
        r = replace(r, settings=settings,
                    asked={**r.asked, "step_timeouts": settings.training.step_timeouts})
    est = sweep_cost(r, est)  # every trial's fine-tune
    for line in est.lines():
        typer.echo(line, err=True)
    cost.check_max_cost(est, opts.max_cost)
    cost.check_memory(est)
    return replace(r, estimate=est)


def run_vertex(opts: Options) -> None:
    from cli import vertex

    settings, values, labels, r = vertex_job(opts)
    est = r.estimate
    spec = templates.load_template(settings.template)
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
    if opts.wait:
        try:
            vertex.wait(job, echo=lambda m: typer.echo(m, err=True))
        except RuntimeError as exc:
            fail(str(exc), code=1)


def run_kfp(opts: Options) -> None:
    host = str(opts.kfp_host)

    kfp.check_kfp_host(host)
    r = resolved(opts, "kfp")
    values = preflight(opts, r)
    # A named template is only read and checked; the default one may be (re)compiled into
    # build/, so that waits until the host has answered.
    named = Path(template(opts, r)) if opts.template else None
    client = kfp.kfp_client(host)  # answers, or one line naming the host
    path = named or Path(template(opts, r))
    templates.check_parameters(templates.load_template(str(path)), values)
    run_id = kfp.submit_kfp(
        host, path, values, run_name=opts.run_id or default_run_id(),
        experiment=opts.experiment, enable_caching=opts.cache,
        service_account=opts.service_account, client_factory=lambda host: client,
    )
    print(f"{host.rstrip('/')}/#/runs/details/{run_id}")


def quota_note(settings: Any, r: Resolved, machines: dict[str, Any]) -> None:
    """The region's custom-training L4 quota against what the run holds at once (cli.quota)."""
    from cli.quota import check_l4_quota, l4s_at_once

    spot = r.settings.training.capacity.value == "SPOT"
    line = check_l4_quota(settings.project, settings.region, l4s_at_once(machines), spot)
    if line:
        note(line)


def check_placement(region: str, r: Resolved) -> dict[str, Any]:
    """One line, exit 2, before submit: a region with no L4 for the GPU steps, a TensorBoard
    instance elsewhere, or an image registry in another region (each step would pull the 9 GB
    image across regions). Returns each GPU step's machine."""
    from pipelines.machines import gpu_step_machines
    from planning.machines import L4_REGIONS

    t = r.settings.training
    machines = gpu_step_machines(t, r.settings.parameter_defaults())
    if any(m.accelerator_type == "NVIDIA_L4" for m in machines.values()) \
            and region not in L4_REGIONS:
        raise InputError(f"region {region} has no NVIDIA L4 (G2) machines; choose one of "
                         f"{', '.join(sorted(L4_REGIONS))}")
    tb = t.tensorboard.split("/locations/")[1].split("/")[0] if t.tensorboard else region
    if tb != region:
        raise InputError(f"the TensorBoard {t.tensorboard} is in {tb}, the run in {region}; "
                         f"create one in {region} (gcloud ai tensorboards create --region {region})")
    host = r.settings.image.split("/")[0]
    if host.endswith("-docker.pkg.dev"):
        where = host.removesuffix("-docker.pkg.dev")
        same = where == region or (where in ("us", "europe", "asia")
                                   and region.startswith(f"{where}-"))
        if not same:
            raise InputError(f"the image is in the {where} registry ({host}), the run in "
                             f"{region}; push it to {region}-docker.pkg.dev (cloudbuild.yaml) "
                             "or submit in its region")
    return machines


def check_model_access(base_model: str, hf_token_secret: str, public_model: bool) -> None:
    """A Hugging Face Hub model with no token secret fails only in the cloud, after the machines
    start (Gemma is gated): refuse here, naming the flag, unless the user says it is public."""
    from components.common.modeling import is_hub_id

    if public_model or hf_token_secret or not is_hub_id(str(base_model)):
        return
    raise InputError(
        f"base_model {base_model} comes from the Hugging Face Hub and no HF token secret is "
        "given; gated models (Gemma) fail after the machines start. Pass --hf-token-secret "
        "projects/PROJECT/secrets/hf-token (docs/vertex.md, Secrets), or --public-model if the "
        "model needs no token"
    )


def check_remote_inputs(values: dict[str, Any]) -> None:
    """A local file given as dataset, prompts_uri or base_model cannot be read by a step running
    on Vertex or a KFP cluster, nor a local checkpoint folder written: say so now, with the fix."""
    for name in ("dataset", "prompts_uri", "base_model"):
        value = str(values.get(name) or "")
        if value and "://" not in value and Path(value).expanduser().exists():
            raise InputError(
                f"{name}={value} is a file on this machine, which the pipeline's steps cannot "
                f"read; upload it (gcloud storage cp -r {value} gs://BUCKET/PATH) and pass "
                "its gs:// URI"
            )
    checkpoints = str(values.get("checkpoint_uri") or "")
    if checkpoints and not checkpoints.startswith("gs://"):
        raise InputError(
            f"checkpoint_uri={checkpoints} is a folder on this machine, which a step on Vertex "
            "or a KFP cluster cannot write (nothing would resume); pass gs://BUCKET/PREFIX"
        )
