"""Run one task of a compiled KFP v2 pipeline YAML the way Vertex AI Pipelines would.

Given the compiled template, a task name, a pipeline root and a job name, this works out the
exact container the backend would start for that task: its image, its argv (the executor's
`command` + `args` with every placeholder filled in) and the ExecutorInput JSON it gets.

    python -m scripts.compiled_step build/dolly-lora.yaml prepare-data \
        --root gs://BUCKET/runs --job check --set dataset=embedded://dolly-15k-sample.jsonl

prints `{"image": ..., "argv": [...], "env": {...}, "executor_input": {...}}`. Run `argv` in
`image` (`--entrypoint argv[0]`, the rest as the command) with the bucket mounted at `/gcs/BUCKET`
and the step reads and writes exactly where it would on Vertex.

What it models, as the KFP backend does:
- input parameters from `runtimeValue.constant`, `componentInputParameter` (the pipeline's
  default values) and `taskOutputParameter` (the producer's `executor_output.json`); `overrides`
  (by input name; pipeline parameters too) win over all of them;
- artifacts at `{root}/{job}/{task}/{output_key}`; an input artifact carries the metadata its
  producer wrote to `{root}/{job}/{producer}/executor_output.json`;
- `gs://B/...` URIs are read and written through the `/gcs/B/...` mount (the KFP executor's own
  mapping); a root without a scheme is a plain local folder, used as is;
- a google-cloud-pipeline-components custom job (`create_custom_training_job_from_component`):
  the worker pool's own container (image_uri, command, args) is what runs the code, with the
  inner component's inputs (the custom-job settings such as machine or timeout left out) and
  `{{$.json_escape[1]}}` as the ExecutorInput JSON (one level of escaping is undone by the
  launcher when it parses the job payload).

Not modelled: tasks inside sub-DAGs (conditions, loops), importers, pipeline-level artifact
inputs, IfPresent/Concat placeholders. Each is refused with an error that says so.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

GCS_PREFIX = "gs://"
GCS_MOUNT = "/gcs"
EXECUTOR_OUTPUT = "executor_output.json"
CUSTOM_JOB_LAUNCHER = "google_cloud_pipeline_components.container.v1.custom_job.launcher"

CHECK_PROJECT = "container-check-project"
"""What `{{$.pipeline_google_cloud_project_id}}` becomes here: no project is ever called."""
CHECK_LOCATION = "us-central1"
"""What `{{$.pipeline_google_cloud_location}}` becomes here."""

PLACEHOLDER = re.compile(r"\{\{\$[^}]*\}\}")
IO_PLACEHOLDER = re.compile(
    r"\{\{\$\.(?P<io>inputs|outputs)\.(?P<kind>parameters|artifacts)"
    r"\['(?P<name>[^']+)'\](?:\.(?P<attr>uri|path|output_file))?\}\}"
)
JSON_ESCAPE = re.compile(r"\{\{\$\.json_escape\[(?P<n>\d+)\]\}\}")


class StepError(ValueError):
    """The task cannot be run as Vertex would run it (and the message says why)."""


# ---------------------------------------------------------------- spec


def load_spec(path: str | Path) -> dict[str, Any]:
    """The PipelineSpec of a compiled YAML (the first document; a platform spec may follow)."""
    with open(path, encoding="utf-8") as f:
        for doc in yaml.safe_load_all(f):
            if isinstance(doc, dict) and "root" in doc and "components" in doc:
                return doc
    raise StepError(f"{path}: no PipelineSpec (root + components) in this YAML")


def _root_tasks(spec: Mapping[str, Any]) -> dict[str, Any]:
    return spec["root"]["dag"]["tasks"]


def _task(spec: Mapping[str, Any], task: str) -> dict[str, Any]:
    tasks = _root_tasks(spec)
    if task in tasks:
        return tasks[task]
    for name, comp in spec["components"].items():
        if task in (comp.get("dag") or {}).get("tasks", {}):
            raise StepError(f"task {task!r} is inside the sub-DAG {name!r} (a condition or loop); "
                            f"only top-level tasks are supported: {', '.join(sorted(tasks))}")
    raise StepError(f"no task {task!r} in this pipeline; top-level tasks: {', '.join(sorted(tasks))}")


def upstream(spec: Mapping[str, Any], task: str) -> list[str]:
    """`task` and every task it depends on, dependencies first (ties in name order)."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "open":
            raise StepError(f"dependency cycle: {' -> '.join((*chain, name))}")
        state[name] = "open"
        t = _task(spec, name)
        deps = set(t.get("dependentTasks", []))
        for binding in (t.get("inputs") or {}).get("parameters", {}).values():
            if "taskOutputParameter" in binding:
                deps.add(binding["taskOutputParameter"]["producerTask"])
        for binding in (t.get("inputs") or {}).get("artifacts", {}).values():
            if "taskOutputArtifact" in binding:
                deps.add(binding["taskOutputArtifact"]["producerTask"])
        for dep in sorted(deps):
            visit(dep, (*chain, name))
        state[name] = "done"
        order.append(name)

    visit(task, ())
    return order


# ---------------------------------------------------------------- paths


def local_path(uri: str) -> str:
    """Where a step sees `uri`: gs://B/x -> /gcs/B/x (as kfp's Artifact.path); others unchanged."""
    if uri.startswith(GCS_PREFIX):
        return f"{GCS_MOUNT}/{uri[len(GCS_PREFIX):]}"
    if "://" in uri:
        raise StepError(f"{uri}: only gs:// or a local folder can be a pipeline root here")
    return uri


def host_path(uri: str, gcs_mount: str | Path = GCS_MOUNT) -> Path:
    """Where this machine reads `uri`: like local_path, with /gcs standing at `gcs_mount`."""
    path = local_path(uri)
    if uri.startswith(GCS_PREFIX):
        return Path(gcs_mount) / path[len(GCS_MOUNT) + 1:]
    return Path(path)


def _uri(root_uri: str, job_name: str, task: str, key: str) -> str:
    return f"{root_uri.rstrip('/')}/{job_name}/{task}/{key}"


# ---------------------------------------------------------------- values


def _coerce(value: Any, ptype: str, where: str) -> Any:
    """A value as the backend passes a parameter of type `ptype` (CLI strings parsed)."""
    try:
        if ptype == "NUMBER_INTEGER":
            if isinstance(value, str):
                value = float(value) if "." in value or "e" in value.lower() else int(value)
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError(f"{value} is not an integer")
                value = int(value)
            return int(value)
        if ptype == "NUMBER_DOUBLE":
            return float(value)
        if ptype == "BOOLEAN":
            if isinstance(value, str):
                if value.lower() not in ("true", "false"):
                    raise ValueError(f"{value!r} is not true/false")
                return value.lower() == "true"
            return bool(value)
        if ptype in ("LIST", "STRUCT"):
            value = json.loads(value) if isinstance(value, str) else value
            if not isinstance(value, list if ptype == "LIST" else dict):
                raise ValueError(f"not a {ptype}")
            return value
        return value if isinstance(value, str) else json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise StepError(f"{where}: {value!r} is not a valid {ptype} ({exc})") from None


def _read_executor_output(producer: str, root_uri: str, job_name: str, gcs_mount: str | Path,
                          ) -> dict[str, Any]:
    uri = _uri(root_uri, job_name, producer, EXECUTOR_OUTPUT)
    path = host_path(uri, gcs_mount)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise StepError(f"{producer!r} has not run: no {path} (the executor output of {uri}); "
                        "run the tasks in upstream() order") from None


def _pipeline_placeholders(task: str, root_uri: str, job_name: str) -> dict[str, str]:
    return {
        "{{$.pipeline_job_name}}": job_name,
        "{{$.pipeline_task_name}}": task,
        "{{$.pipeline_root}}": root_uri,
        "{{$.pipeline_google_cloud_project_id}}": CHECK_PROJECT,
        "{{$.pipeline_google_cloud_location}}": CHECK_LOCATION,
    }


def _substitute_pipeline(text: str, known: Mapping[str, str], where: str) -> str:
    for ph, value in known.items():
        text = text.replace(ph, value)
    left = [m for m in PLACEHOLDER.findall(text) if m.startswith("{{$.pipeline_")]
    if left:
        raise StepError(f"{where}: runtime placeholder {', '.join(sorted(set(left)))} cannot be "
                        f"resolved here (known: {', '.join(known)})")
    return text


# ---------------------------------------------------------------- invocation


def _launcher_inputs(container: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """Inputs/outputs the custom-job launcher itself consumes (its settings, not the code's)."""
    text = json.dumps([container.get("command", []), container.get("args", [])])
    ins = set(re.findall(r"\$\.inputs\.parameters\[''?([^'\]]+)''?\]", text))
    outs = set(re.findall(r"\$\.outputs\.parameters\[''?([^'\]]+)''?\]", text))
    return ins, outs


def _is_custom_job(container: Mapping[str, Any]) -> bool:
    return CUSTOM_JOB_LAUNCHER in " ".join(container.get("command", []) + container.get("args", []))


def _executor(spec: Mapping[str, Any], task: str) -> tuple[dict[str, Any], dict[str, Any]]:
    comp_name = _task(spec, task)["componentRef"]["name"]
    comp = spec["components"][comp_name]
    label = comp.get("executorLabel")
    if not label:
        raise StepError(f"task {task!r} ({comp_name}) is a sub-DAG, not a container task")
    executor = spec["deploymentSpec"]["executors"][label]
    if "container" not in executor:
        raise StepError(f"task {task!r}: executor {label} is not a container "
                        f"({', '.join(executor)}); importers and resolvers are not supported")
    return comp, executor["container"]


def _resolve_parameters(spec: Mapping[str, Any], task: str, names: list[str], root_uri: str,
                        job_name: str, overrides: Mapping[str, Any], gcs_mount: str | Path,
                        ) -> dict[str, Any]:
    t = _task(spec, task)
    comp, _ = _executor(spec, task)
    defs = comp.get("inputDefinitions", {}).get("parameters", {})
    root_defs = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    bindings = (t.get("inputs") or {}).get("parameters", {})
    known = _pipeline_placeholders(task, root_uri, job_name)
    outputs_cache: dict[str, dict[str, Any]] = {}
    values: dict[str, Any] = {}
    for name in names:
        pdef = defs[name]
        ptype = pdef.get("parameterType", "STRING")
        where = f"task {task!r} input {name!r}"
        binding = bindings.get(name)
        if name in overrides:
            value = overrides[name]
        elif binding is None:
            if "defaultValue" not in pdef:
                if pdef.get("isOptional"):
                    continue
                raise StepError(f"{where}: not bound by the task and without a default")
            value = copy.deepcopy(pdef["defaultValue"])
        elif "runtimeValue" in binding:
            value = copy.deepcopy(binding["runtimeValue"]["constant"])
        elif "componentInputParameter" in binding:
            pname = binding["componentInputParameter"]
            if pname in overrides:
                value = overrides[pname]
            elif pname in root_defs and "defaultValue" in root_defs[pname]:
                value = copy.deepcopy(root_defs[pname]["defaultValue"])
            else:
                raise StepError(f"{where}: pipeline parameter {pname!r} has no default; "
                                f"set it (--set {pname}=...)")
        elif "taskOutputParameter" in binding:
            src = binding["taskOutputParameter"]
            producer, key = src["producerTask"], src["outputParameterKey"]
            if producer not in outputs_cache:
                outputs_cache[producer] = _read_executor_output(producer, root_uri, job_name,
                                                                gcs_mount)
            produced = outputs_cache[producer].get("parameterValues", {})
            if key not in produced:
                raise StepError(f"{where}: {producer!r} wrote no output parameter {key!r}")
            value = produced[key]
        else:
            raise StepError(f"{where}: binding {sorted(binding)} is not supported here")
        if isinstance(value, str):
            value = _substitute_pipeline(value, known, where)
        values[name] = _coerce(value, ptype, where)
    return values


def _resolve_input_artifacts(spec: Mapping[str, Any], task: str, names: list[str], root_uri: str,
                             job_name: str, gcs_mount: str | Path) -> dict[str, Any]:
    t = _task(spec, task)
    comp, _ = _executor(spec, task)
    defs = comp.get("inputDefinitions", {}).get("artifacts", {})
    bindings = (t.get("inputs") or {}).get("artifacts", {})
    artifacts: dict[str, Any] = {}
    for name in names:
        binding = bindings.get(name)
        where = f"task {task!r} input artifact {name!r}"
        if binding is None:
            if defs[name].get("isOptional"):
                continue
            raise StepError(f"{where}: not bound by the task")
        if "taskOutputArtifact" not in binding:
            raise StepError(f"{where}: binding {sorted(binding)} is not supported here "
                            "(only outputs of upstream tasks)")
        producer = binding["taskOutputArtifact"]["producerTask"]
        key = binding["taskOutputArtifact"]["outputArtifactKey"]
        produced = _read_executor_output(producer, root_uri, job_name, gcs_mount)
        listed = produced.get("artifacts", {}).get(key, {}).get("artifacts", [])
        written = listed[0] if listed else {}
        artifacts[name] = {"artifacts": [{
            "name": written.get("name") or key,
            "type": copy.deepcopy(defs[name]["artifactType"]),
            "uri": _uri(root_uri, job_name, producer, key),
            "metadata": written.get("metadata", {}),
        }]}
    return artifacts


def _outputs(comp: Mapping[str, Any], task: str, root_uri: str, job_name: str,
             skip_parameters: set[str]) -> dict[str, Any]:
    defs = comp.get("outputDefinitions", {})
    return {
        "artifacts": {
            key: {"artifacts": [{
                "name": key,
                "type": copy.deepcopy(adef["artifactType"]),
                "uri": _uri(root_uri, job_name, task, key),
                "metadata": {},
            }]}
            for key, adef in sorted(defs.get("artifacts", {}).items())
        },
        "parameters": {
            key: {"outputFile": local_path(_uri(root_uri, job_name, task, key))}
            for key in sorted(defs.get("parameters", {})) if key not in skip_parameters
        },
        "outputFile": local_path(_uri(root_uri, job_name, task, EXECUTOR_OUTPUT)),
    }


def _fill(element: str, executor_input: Mapping[str, Any], known: Mapping[str, str], depth: int,
          where: str) -> str:
    """One argv element with every placeholder replaced (or a StepError naming the one left)."""
    if element.startswith(('{"Concat"', '{"IfPresent"')):
        raise StepError(f"{where}: Concat/IfPresent placeholders are not supported: {element[:80]}")
    payload = json.dumps(executor_input)

    def escape(m: re.Match[str]) -> str:
        # json_escape[n]: the JSON escaped n times for embedding in n levels of JSON strings;
        # inside a custom job's worker pool spec the launcher has already undone `depth` levels.
        text = payload
        for _ in range(int(m.group("n")) - depth):
            text = json.dumps(text)[1:-1]
        return text

    element = element.replace("{{$}}", payload)
    element = JSON_ESCAPE.sub(escape, element)
    for key, value in {"{{$.outputs.output_file}}": executor_input["outputs"]["outputFile"],
                       "{{$.outputMetadataUri}}": executor_input["outputs"]["outputFile"]}.items():
        element = element.replace(key, value)

    def io(m: re.Match[str]) -> str:
        io_, kind, name, attr = m.group("io", "kind", "name", "attr")
        if kind == "parameters":
            if io_ == "inputs" and attr is None:
                values = executor_input["inputs"].get("parameterValues", {})
                if name not in values:
                    raise StepError(f"{where}: {m.group(0)} has no value")
                v = values[name]
                return v if isinstance(v, str) else json.dumps(v)
            if io_ == "outputs" and attr == "output_file":
                return executor_input["outputs"]["parameters"][name]["outputFile"]
        elif attr in ("uri", "path"):
            arts = executor_input[io_].get("artifacts", {}).get(name, {}).get("artifacts", [])
            if not arts:
                raise StepError(f"{where}: {m.group(0)} has no artifact")
            return arts[0]["uri"] if attr == "uri" else local_path(arts[0]["uri"])
        raise StepError(f"{where}: placeholder {m.group(0)} is not supported here")

    element = IO_PLACEHOLDER.sub(io, element)
    element = _substitute_pipeline(element, known, where)
    left = PLACEHOLDER.findall(element)
    if left:
        raise StepError(f"{where}: placeholder {', '.join(sorted(set(left)))} is not supported here")
    return element


def _container(spec: Mapping[str, Any], task: str, params: Mapping[str, Any] | None = None,
               ) -> tuple[dict[str, Any], bool]:
    """The container that runs the task's code (a custom job's worker pool 0, else the executor)."""
    comp, container = _executor(spec, task)
    if not _is_custom_job(container):
        return container, False
    defs = comp.get("inputDefinitions", {}).get("parameters", {})
    pools = (params or {}).get("worker_pool_specs")
    if pools is None:
        pools = defs.get("worker_pool_specs", {}).get("defaultValue")
    if not pools:
        raise StepError(f"task {task!r} is a custom job without worker_pool_specs")
    spec0 = pools[0].get("container_spec")
    if not spec0:
        raise StepError(f"task {task!r}: worker pool 0 has no container_spec "
                        "(python_package_spec jobs are not supported)")
    return {"image": spec0["image_uri"], "command": spec0.get("command", []),
            "args": spec0.get("args", []),
            "env": [{"name": e["name"], "value": e.get("value", "")} for e in spec0.get("env", [])],
            }, True


def executor_invocation(
    spec: Mapping[str, Any],
    task: str,
    *,
    root_uri: str,
    job_name: str,
    overrides: Mapping[str, Any] | None = None,
    gcs_mount: str | Path = GCS_MOUNT,
) -> tuple[str, list[str], dict[str, Any]]:
    """(image, argv, executor_input) of `task`, as the Vertex backend would start it.

    root_uri: the pipeline root, gs://BUCKET/PREFIX (seen by the step as /gcs/BUCKET/PREFIX) or a
    local folder. overrides: input values by name, winning over constants, upstream outputs and
    pipeline defaults; a pipeline parameter's name (e.g. max_steps) reaches every task input
    bound to it. gcs_mount: where /gcs lives on this machine, to read upstream executor outputs.
    """
    overrides = dict(overrides or {})
    comp, container = _executor(spec, task)
    defs = comp.get("inputDefinitions", {})
    param_names = sorted(defs.get("parameters", {}))
    artifact_names = sorted(defs.get("artifacts", {}))
    skip_outputs: set[str] = set()
    custom_job = _is_custom_job(container)
    if custom_job:
        # The inner component's inputs are those the launcher does not consume itself.
        launcher_ins, skip_outputs = _launcher_inputs(container)
        param_names = [n for n in param_names if n not in launcher_ins]
    root_params = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    unknown = sorted(set(overrides) - set(defs.get("parameters", {})) - set(root_params))
    if unknown:
        raise StepError(f"overrides {unknown} are neither inputs of task {task!r} nor pipeline "
                        "parameters")

    executor_input = {
        "inputs": {
            "parameterValues": _resolve_parameters(spec, task, param_names, root_uri, job_name,
                                                   overrides, gcs_mount),
            "artifacts": _resolve_input_artifacts(spec, task, artifact_names, root_uri, job_name,
                                                  gcs_mount),
        },
        "outputs": _outputs(comp, task, root_uri, job_name, skip_outputs),
    }
    if not executor_input["inputs"]["artifacts"]:
        del executor_input["inputs"]["artifacts"]

    pool_params = None
    if custom_job and "worker_pool_specs" in overrides:
        pool_params = {"worker_pool_specs": _coerce(overrides["worker_pool_specs"], "LIST",
                                                    "worker_pool_specs")}
    run, _ = _container(spec, task, pool_params)
    known = _pipeline_placeholders(task, root_uri, job_name)
    depth = 1 if custom_job else 0
    argv = [_fill(el, executor_input, known, depth, f"task {task!r} argv[{i}]")
            for i, el in enumerate([*run.get("command", []), *run.get("args", [])])]
    if not argv:
        raise StepError(f"task {task!r}: the container has no command or args")
    return run["image"], argv, executor_input


VERTEX_CLUSTER_SPEC = json.dumps({
    "cluster": {"workerpool0": ["workerpool0-0:2222"]},
    "environment": "cloud",
    "task": {"type": "workerpool0", "index": 0},
})
"""CLUSTER_SPEC as Vertex sets it on a one-replica custom job (kfp's executor reads it: only the
chief, workerpool0, writes the executor output)."""


def executor_env(spec: Mapping[str, Any], task: str) -> dict[str, str]:
    """Environment the task's container gets from the spec (usually nothing for a plain task;
    a custom job's replica also gets Vertex's CLUSTER_SPEC)."""
    run, custom_job = _container(spec, task)
    env = {"CLUSTER_SPEC": VERTEX_CLUSTER_SPEC} if custom_job else {}
    env.update({e["name"]: e.get("value", "") for e in run.get("env", [])})
    return env


# ---------------------------------------------------------------- CLI


def _parse_set(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise StepError(f"--set {item!r}: expected NAME=VALUE")
        out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.compiled_step",
        description="Print the image, argv and executor input Vertex would use for TASK.")
    parser.add_argument("template", type=Path, help="compiled pipeline YAML")
    parser.add_argument("task", help="top-level task name, e.g. prepare-data")
    parser.add_argument("--root", help="pipeline root: gs://BUCKET/PREFIX or a folder (required)")
    parser.add_argument("--job", help="pipeline job name, {{$.pipeline_job_name}} (required)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE",
                        help="override an input or pipeline parameter (repeatable)")
    parser.add_argument("--gcs-mount", default=GCS_MOUNT,
                        help="folder on this machine that stands for /gcs [/gcs]")
    parser.add_argument("--upstream", action="store_true",
                        help="print upstream(TASK) as JSON instead, and nothing else")
    args = parser.parse_args(argv)
    if not args.upstream and not (args.root and args.job):
        parser.error("--root and --job are required (unless --upstream)")
    try:
        spec = load_spec(args.template)
        if args.upstream:
            print(json.dumps(upstream(spec, args.task)))
            return 0
        image, cmd, executor_input = executor_invocation(
            spec, args.task, root_uri=args.root, job_name=args.job,
            overrides=_parse_set(args.sets), gcs_mount=args.gcs_mount)
        env = executor_env(spec, args.task)
    except StepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"image": image, "argv": cmd, "env": env, "executor_input": executor_input},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
