"""Compiled templates: load and check one, decide whether it is stale, recompile the default.

A template's first line is its build stamp (`pipelines.compiler`): the code and the compile
settings it was built from. `submit` sends only a template that matches both.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

import yaml

from components.common.errors import InputError
from pipelines.compiler import DEFAULT_TEMPLATES, git_commit, read_stamp

AR_TEMPLATE = re.compile(
    r"^https://(?P<region>[a-z0-9-]+)-kfp\.pkg\.dev/(?P<project>[^/]+)/(?P<repo>[^/]+)"
    r"/(?P<package>[^/]+)/(?P<ref>[A-Za-z0-9_.:-]+)$"
)


def load_template(template: str) -> dict[str, Any] | None:
    """The compiled pipeline spec of a local template (None for an Artifact Registry one)."""
    if template.startswith("https://"):
        if not AR_TEMPLATE.match(template):
            raise InputError(f"{template!r} is not an Artifact Registry template URL like "
                             "https://REGION-kfp.pkg.dev/PROJECT/REPO/PACKAGE/TAG")
        return None
    path = Path(template)
    if not path.is_file():
        raise InputError(f"template {template} does not exist; run `uv run python compile.py`")
    stat = path.stat()
    return copy.deepcopy(_parse_template(str(path.resolve()), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=4)
def _parse_template(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    """Parsed once per file version: a submit reads its template for several checks."""
    try:  # a KFP template with platform settings (--target kfp) is two YAML documents
        spec = next(iter(yaml.safe_load_all(Path(path).read_text())), None)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"template {path} is not YAML ({exc.__class__.__name__})") from None
    if not isinstance(spec, dict) or not {"pipelineInfo", "root", "deploymentSpec"} <= set(spec):
        raise InputError(f"template {path} is not a compiled KFP pipeline")
    return spec


def template_images(spec: dict[str, Any]) -> set[str]:
    """Every container image a compiled spec runs (executors and custom-job worker pools)."""
    text = json.dumps(spec.get("deploymentSpec", {}))
    return set(re.findall(r'"(?:image|image_uri)": "([^"]+)"', text))


def check_parameters(spec: dict[str, Any] | None, values: dict[str, Any]) -> None:
    """Refuse overrides the template does not declare (an older or foreign template)."""
    if spec is None:
        return
    declared = set(spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {}))
    unknown = sorted(set(values) - declared)
    if unknown:
        raise InputError(f"the template has no parameter {', '.join(unknown)}; recompile it")


def resolve_template(template: str | None, r: Any) -> tuple[str, str]:
    """(template to send, note for the user). A template must match the code and the compile
    settings asked for (`r.asked`: DOLLY_LORA_* variables, the target, `--profile`): the default
    one under build/ is compiled for `r.settings` when missing or stale (`resolve` kept the
    settings it was compiled with under the ones asked for); one the user named is refused when
    stale."""
    from pipelines.compiler import compile_pipeline, stale_reasons

    wanted, target = r.asked, r.settings.target
    if template and template.startswith("https://"):
        load_template(template)  # an Artifact Registry URL: checked for shape only
        return template, ""
    if template:
        load_template(template)
        reasons = stale_reasons(read_stamp(Path(template)), wanted)
        if reasons:
            flags = (" --target kfp" if target == "kfp" else "") + (
                f" --profile {wanted['profile']}" if wanted.get("profile") else "")
            raise InputError(
                f"template {template} does not match what this submit asks for: "
                f"{'; '.join(reasons)}; recompile it (uv run python compile.py{flags} "
                f"--out {template} [--image ...]) or leave out --template"
            )
        return template, ""
    path = DEFAULT_TEMPLATES[target]
    stamp = read_stamp(path) if path.exists() else None
    reasons = stale_reasons(stamp, wanted) if path.exists() else ["it did not exist"]
    if not reasons:
        return str(path), ""
    compile_pipeline(path, r.settings)
    return str(path), f"compiled {path}: {'; '.join(reasons)}"


def template_commit(template: str) -> str:
    """The commit a template was compiled from (its stamp), else this checkout's."""
    stamp = None if template.startswith("https://") else read_stamp(Path(template))
    return str((stamp or {}).get("commit") or git_commit())


def training_strategy(spec: dict[str, Any]) -> str:
    """Capacity kind (STANDARD, SPOT, FLEX_START) the template trains on."""
    params = spec.get("components", {}).get("comp-fine-tune", {}).get(
        "inputDefinitions", {}).get("parameters", {})
    return str(params.get("strategy", {}).get("defaultValue", "STANDARD"))


def custom_jobs(spec: dict[str, Any] | None, settings: Any) -> dict[str, Any]:
    """Each custom job of a template as it will run: machine, capacity, and the identity and
    network its run-time placeholders resolve to for this submission."""
    from pipelines.machines import NETWORK_PLACEHOLDER, SERVICE_ACCOUNT_PLACEHOLDER

    resolved = {
        SERVICE_ACCOUNT_PLACEHOLDER: settings.service_account
        or "the project's Compute Engine default service account (no --service-account)",
        NETWORK_PLACEHOLDER: settings.network,
    }
    jobs: dict[str, Any] = {}
    for comp in (spec or {}).get("components", {}).values():
        params = comp.get("inputDefinitions", {}).get("parameters", {})
        if "worker_pool_specs" not in params:
            continue

        def value(name: str, params: dict[str, Any] = params) -> Any:
            return params.get(name, {}).get("defaultValue")

        pool = value("worker_pool_specs")[0]
        jobs[value("display_name")] = {
            "machine_spec": pool["machine_spec"],
            "strategy": value("strategy"),
            "timeout": value("timeout"),
            "service_account": resolved.get(value("service_account"), value("service_account")),
            "network": resolved.get(value("network"), value("network")),
            **({"tensorboard": value("tensorboard"),
                "base_output_directory": value("base_output_directory")}
               if value("tensorboard") else {}),
        }
    return jobs


def job_timeouts(spec: dict[str, Any] | None) -> dict[str, float]:
    """Seconds each custom job of a template may run ({} for an Artifact Registry template)."""
    out: dict[str, float] = {}
    for comp in (spec or {}).get("components", {}).values():
        params = comp.get("inputDefinitions", {}).get("parameters", {})
        if "worker_pool_specs" in params and "timeout" in params:
            name = params["display_name"]["defaultValue"]
            out[name] = float(str(params["timeout"]["defaultValue"]).rstrip("s"))
    return out


def registry_model(spec: dict[str, Any], base_model: str) -> str:
    """The Model Registry model a run of this template adds its version to (if the gate
    passes): the name compiled in, else the one register-model derives from the run's base
    model."""
    from components.common.serving import display_name_for

    for comp in spec.get("components", {}).values():
        task = comp.get("dag", {}).get("tasks", {}).get("register-model")
        if task:
            named = task["inputs"]["parameters"].get("display_name", {})
            if named.get("runtimeValue", {}).get("constant"):
                return str(named["runtimeValue"]["constant"])
    return display_name_for(base_model)
