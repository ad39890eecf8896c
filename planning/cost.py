"""What a run will cost, before it is submitted: training tokens, GPU hours, price, dollars.

Tokens are measured by the prepare step's own code when the data and tokenizer are on this
machine, otherwise estimated from the shipped Dolly sample; speeds come from
planning/throughput.py, prices from planning/prices.py. `submit` prints the estimate before it
calls Vertex and refuses above `--max-cost`; the report shows it beside what the run took.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from components.common.errors import InputError

DOLLY_15K = "databricks/databricks-dolly-15k"
DOLLY_15K_ROWS = 15_011  # the dataset card's row count (train split, the only one)


@dataclass
class Tokens:
    """Training rows and tokens of one epoch, test rows, and how they were obtained."""

    train_rows: int
    train_tokens: int
    test_rows: int
    measured: bool
    note: str


@dataclass
class Estimate:
    profile: str
    machine_type: str
    accelerator_type: str
    accelerator_count: int
    capacity: str
    price_per_hour: float
    price_source: str
    train_tokens: int
    tokens_measured: bool
    tokens_note: str
    train_tokens_per_s: float
    generate_tokens: int
    generate_tokens_per_s: float
    throughput_basis: str
    train_seconds: float
    generate_seconds: float
    startup_seconds: float
    gpu_seconds: float
    usd: float
    # Expected peak GiB of each GPU step (planning/memory.py); None: architecture unknown.
    memory_gib: dict[str, float] | None = None
    memory_budget_gib: float | None = None
    # Per GPU step: its machine, price, expected seconds and deadline (`deadlines`).
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    # deploy=true: the endpoint's machine, its hours (until deploy_ttl_hours) and price.
    serving: dict[str, Any] | None = None
    # Every GPU step running to its deadline, plus the serving hours.
    worst_usd: float = 0.0

    def as_json(self) -> str:
        return json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                           for k, v in asdict(self).items()}, sort_keys=True)

    def with_timeouts(self, timeouts: dict[str, float]) -> Estimate:
        """This estimate with the deadlines a template really carries (seconds per step)."""
        steps = {k: {**v, "timeout_seconds": float(timeouts.get(k, v["timeout_seconds"]))}
                 for k, v in self.steps.items()}
        return replace(self, steps=steps, worst_usd=_worst(steps, self.serving))

    def step_lines(self) -> list[str]:
        out = []
        for step, s in self.steps.items():
            out.append(
                f"  {step}: {s['machine_type']} ({s['accelerator_count']} x "
                f"{s['accelerator_type']}) at ${s['usd_per_hour']:.4f}/h, expected "
                f"{(s['run_seconds'] + s['startup_seconds']) / 60:.1f} min, timeout "
                f"{s['timeout_seconds'] / 3600:.2f} h")
        if self.serving:
            v = self.serving
            out.append(f"  serving (deploy=true): {v['machine_type']} ({v['accelerator_count']} x "
                       f"{v['accelerator_type']}) for {v['hours']:g} h (deploy_ttl_hours) at "
                       f"${v['usd_per_hour']:.4f}/h = ${v['usd']:.2f}")
        out.append(f"  worst case (every GPU step to its timeout{', plus serving' if self.serving else ''}): "
                   f"${self.worst_usd:.2f}")
        return out

    def lines(self) -> list[str]:
        kind = {"STANDARD": "on demand", "SPOT": "Spot", "FLEX_START": "FLEX_START"}.get(
            self.capacity, self.capacity)
        basis = "measured" if self.tokens_measured else "estimate"
        return [
            f"cost estimate: profile {self.profile}, {self.machine_type} with "
            f"{self.accelerator_count} x {self.accelerator_type}, {kind}",
            f"  training tokens: {self.train_tokens:,} ({basis}: {self.tokens_note})",
            f"  GPU time: {self.gpu_seconds / 3600:.2f} h = fine-tune "
            f"{self.train_seconds / 60:.1f} min at {self.train_tokens_per_s:,.0f} tokens/s + "
            f"evaluate and inference {self.generate_seconds / 60:.1f} min ({self.generate_tokens:,}"
            f" generated tokens at most, {self.generate_tokens_per_s:,.0f} tokens/s) + start-up "
            f"{self.startup_seconds / 60:.1f} min",
            f"  throughput: {self.throughput_basis}",
            f"  price: ${self.price_per_hour:.4f}/h {kind} ({self.price_source})",
            f"  estimated cost: ${self.usd:.2f}"
            + (f" (serving ${self.serving['usd']:.2f} of it)" if self.serving else ""),
            *self.step_lines(),
            self.memory_line(),
        ]

    def memory_line(self) -> str:
        if not self.memory_gib:
            return "  GPU memory: architecture not in planning/gemma3.py, not estimated"
        steps = ", ".join(f"{k} {v:.1f}" for k, v in self.memory_gib.items())
        return (f"  GPU memory, expected peak per GPU: {steps} GiB of the "
                f"{self.accelerator_type}'s {self.memory_budget_gib:.2f} GiB budget")


def _local_file(ref: str) -> bool:
    from components.common.paths import looks_like_hub_id
    from components.common.storage import is_gcs

    return ref.startswith("embedded://") or not (is_gcs(ref) or looks_like_hub_id(ref))


def _tokenizer_here(ref: str) -> bool:
    from pathlib import Path

    from components.common.modeling import is_hub_id
    from components.common.storage import is_gcs

    return ref.startswith("embedded://") or (not is_gcs(ref) and not is_hub_id(ref)
                                             and Path(ref).is_dir())


def data_tokens(params: dict[str, Any]) -> Tokens:
    """One epoch's training tokens, from the data's token statistics (see the module doc)."""
    from pathlib import Path

    from components.common.config import DataConfig, build

    cfg: DataConfig = build(DataConfig, params)
    local = Path(cfg.dataset)
    stamp = local.stat().st_mtime_ns if _local_file(cfg.dataset) and local.is_file() else 0
    return _data_tokens(cfg.model_dump_json(), stamp)


@functools.lru_cache(maxsize=16)
def _data_tokens(cfg_json: str, _file_version: int) -> Tokens:
    """Once per data configuration (and local file version) in a process: compile and submit
    both estimate."""
    from components.common.config import DOLLY_CATEGORIES, DataConfig
    from components.common.paths import EMBEDDED_SCHEME
    from components.prepare_data.prepare import check

    cfg = DataConfig.model_validate_json(cfg_json)
    if _local_file(cfg.dataset) and _tokenizer_here(cfg.base_model):
        splits = check(cfg).splits
        tokens = sum(r["num_tokens"] for r in splits["train"])
        return Tokens(len(splits["train"]), tokens, len(splits["test"]), True,
                      f"the prepare step's token counts of {cfg.dataset} with "
                      f"{cfg.base_model}'s tokenizer, {len(splits['train']):,} train rows")
    dolly = [c for c in cfg.category_list if c in DOLLY_CATEGORIES]  # the sample has only these
    sample_cfg = cfg.model_copy(update={"dataset": EMBEDDED_SCHEME + "dolly-15k-sample.jsonl",
                                        "base_model": EMBEDDED_SCHEME + "tiny-gemma3",
                                        "categories": ",".join(dolly), "columns": "",
                                        "data_format": "auto"})
    sample = check(sample_cfg)
    kept = [r for rows in sample.splits.values() for r in rows]
    per_row = sum(r["num_tokens"] for r in kept) / len(kept)
    share = len(kept) / sample.source_rows  # rows that survive validation, categories, max_seq_len
    if _local_file(cfg.dataset):
        rows = check(cfg.model_copy(update={"base_model": sample_cfg.base_model})).source_rows
        where = f"the {cfg.dataset} rows counted here"
    elif cfg.dataset == DOLLY_15K:
        rows, where = DOLLY_15K_ROWS, f"{DOLLY_15K}'s {DOLLY_15K_ROWS:,} rows"
    else:
        rows, where = DOLLY_15K_ROWS, f"{cfg.dataset} not readable here: assumed Dolly-15k's " \
                                      f"{DOLLY_15K_ROWS:,} rows"
    usable = rows * share
    train_rows = round(usable * (1 - cfg.val_fraction - cfg.test_fraction))
    return Tokens(
        train_rows, round(train_rows * per_row), round(usable * cfg.test_fraction), False,
        f"{where} x {share:.1%} kept x {1 - cfg.val_fraction - cfg.test_fraction:.0%} train "
        f"= {train_rows:,} rows x {per_row:.1f} tokens/row of the shipped Dolly sample with the "
        "embedded tokenizer (its 2k vocabulary splits text finer than Gemma's 262k one: errs "
        "high)",
    )


def training_tokens(tokens: Tokens, params: dict[str, Any], processes: int) -> tuple[int, str]:
    """Tokens the fine-tune step will process: epochs of the data, or max_steps full steps."""
    if params["max_steps"] > 0:
        per_step = (params["per_device_train_batch_size"] * params["gradient_accumulation_steps"]
                    * processes * params["max_seq_len"])
        return params["max_steps"] * per_step, (
            f"max_steps {params['max_steps']} x {per_step:,} tokens per step at most (packed "
            f"sequences of {params['max_seq_len']})")
    return round(tokens.train_tokens * params["num_train_epochs"]), (
        f"{tokens.note}, x {params['num_train_epochs']:g} epoch(s)")


def throughput_for(profile: str, params: dict[str, Any], accelerator_type: str,
                   accelerator_count: int) -> tuple[float, float, float, str]:
    """(train tokens/s, generate tokens/s, start-up s per job, basis): the profile's row of the
    throughput table when the run is that profile's, else the same arithmetic for what was
    overridden (a known Gemma 3 model), else InputError."""
    from planning import throughput
    from planning.gemma3 import GEMMA3
    from planning.profiles import PROFILES
    from planning.throughput import THROUGHPUT

    row = PROFILES[profile]
    same = (all(params.get(k) == row.params.get(k) for k in ("base_model", "quantization",
                                                         "distributed"))
            and accelerator_count == row.accelerator_count
            and accelerator_type == row.accelerator_type)
    batch_scale = params["generation_batch_size"] / 16
    if same and (profile, accelerator_type) in THROUGHPUT:
        t = THROUGHPUT[(profile, accelerator_type)]
        return t.train_tokens_per_s, t.generate_tokens_per_s * batch_scale, t.startup_s, t.basis
    model = params["base_model"]
    if model not in GEMMA3 or accelerator_type not in throughput.PEAK_BF16:
        raise InputError(
            f"no throughput figure for {model} on {accelerator_type} (profile {profile} was "
            "changed); use a profile as it is, or leave out --max-cost"
        )
    q, gpus = params["quantization"], accelerator_count
    return (throughput.train_tokens_per_s(model, q, accelerator_type, gpus, params["distributed"]),
            throughput.generate_tokens_per_s(model, q, accelerator_type,
                                             params["generation_batch_size"]),
            300.0, f"estimated (planning/throughput.py arithmetic for {model}, {q}, {gpus} GPU)")


# A GPU job's deadline: DEADLINE_FACTOR x its expected run plus its start-up, at least
# DEADLINE_FLOOR_S, in whole minutes (`compile.py --timeout` / DOLLY_LORA_TRAIN_TIMEOUT override).
DEADLINE_FACTOR = 3.0
DEADLINE_FLOOR_S = 1800.0
DEFAULT_TTL_HOURS = 8.0  # deploy_ttl_hours when the pipeline has no such parameter


def deadline(run_s: float, startup_s: float) -> float:
    """Seconds a GPU job may run before Vertex cancels it (see DEADLINE_FACTOR)."""
    return max(DEADLINE_FLOOR_S, math.ceil((DEADLINE_FACTOR * run_s + startup_s) / 60) * 60)


def deadlines(est: Estimate) -> dict[str, str]:
    """Each GPU step's deadline as a custom job timeout ('3600s')."""
    return {k: f"{v['timeout_seconds']:.0f}s" for k, v in sorted(est.steps.items())}


def _worst(steps: dict[str, dict[str, Any]], serving: dict[str, Any] | None) -> float:
    return (sum(v["timeout_seconds"] / 3600 * v["usd_per_hour"] for v in steps.values())
            + (serving["usd"] if serving else 0.0))


def estimate(params: dict[str, Any], profile: str, machine_type: str, accelerator_type: str,
             accelerator_count: int, capacity: str, price: float | None = None,
             tokens: Tokens | None = None, machines: dict[str, Any] | None = None,
             serving: Any = None) -> Estimate:
    """The estimate for a run with these parameter values (all of them, as the run will use
    them) on this machine. `price` overrides the price table (the user's gpu_hourly_usd) for
    every GPU step. `machines`: a planning.machines row per GPU step (default: all on the
    training machine); `serving`: the endpoint's machine, counted when deploy=true."""
    from planning.machines import GPU_STEPS, AcceleratorMachine
    from planning.memory import GPU_GIB, budget, gpu_steps_gib
    from planning.prices import Price
    from planning.prices import price as table_price

    tokens = tokens or data_tokens(params)
    processes = params["num_processes"] or accelerator_count
    train_tokens, note = training_tokens(tokens, params, processes)
    train_tps, gen_tps, startup, basis = throughput_for(profile, params, accelerator_type,
                                                        accelerator_count)
    train_machine = AcceleratorMachine(machine_type, accelerator_type, accelerator_count, "", "")
    machines = {step: train_machine for step in GPU_STEPS} | (machines or {})

    def step_price(m: Any) -> Price:
        if price is not None:
            return Price(price, "your gpu_hourly_usd")
        found = table_price(m.machine_type, capacity)
        if found is None:
            raise InputError(f"no price for {m.machine_type} on {capacity} capacity; pass "
                             "--param gpu_hourly_usd=USD_PER_HOUR")
        return found

    eval_rows = min(tokens.test_rows, params["eval_max_rows"] or tokens.test_rows)
    # evaluate generates with the base and the tuned model, inference once per test row
    run = {"fine-tune": train_tokens / train_tps,
           "evaluate": eval_rows * 2 * params["max_new_tokens"] / gen_tps,
           "inference": tokens.test_rows * params["max_new_tokens"] / gen_tps}
    steps: dict[str, dict[str, Any]] = {}
    for step in GPU_STEPS:
        m, p = machines[step], step_price(machines[step])
        steps[step] = {
            "machine_type": m.machine_type, "accelerator_type": m.accelerator_type,
            "accelerator_count": m.accelerator_count, "usd_per_hour": p.usd_per_hour,
            "price_source": p.source, "run_seconds": run[step], "startup_seconds": startup,
            "timeout_seconds": deadline(run[step], startup),
        }
    serve = None
    if params.get("deploy") and serving is not None:
        hours = float(params.get("deploy_ttl_hours") or DEFAULT_TTL_HOURS)
        p = table_price(serving.machine_type, "STANDARD", use="prediction")
        if p is None:
            raise InputError(f"no price for the serving machine {serving.machine_type}")
        serve = {"machine_type": serving.machine_type,
                 "accelerator_type": serving.accelerator_type,
                 "accelerator_count": serving.accelerator_count, "hours": hours,
                 "usd_per_hour": p.usd_per_hour, "usd": hours * p.usd_per_hour,
                 "price_source": p.source}
    generated = (eval_rows * 2 + tokens.test_rows) * params["max_new_tokens"]
    train_s = run["fine-tune"]
    gen_s = run["evaluate"] + run["inference"]
    startup_s = startup * len(GPU_STEPS)
    gpu_s = train_s + gen_s + startup_s
    usd = sum((v["run_seconds"] + v["startup_seconds"]) / 3600 * v["usd_per_hour"]
              for v in steps.values()) + (serve["usd"] if serve else 0.0)
    memory = gpu_steps_gib(params, processes, accelerator_count)
    gen_gpus = machines["evaluate"].accelerator_count
    if memory and gen_gpus != accelerator_count:
        memory.update({k: v for k, v in (gpu_steps_gib(params, 1, gen_gpus) or {}).items()
                       if k != "fine-tune"})
    return Estimate(
        profile=profile, machine_type=machine_type, accelerator_type=accelerator_type,
        accelerator_count=accelerator_count, capacity=capacity,
        price_per_hour=steps["fine-tune"]["usd_per_hour"],
        price_source=steps["fine-tune"]["price_source"], train_tokens=train_tokens,
        tokens_measured=tokens.measured, tokens_note=note, train_tokens_per_s=train_tps,
        generate_tokens=generated, generate_tokens_per_s=gen_tps, throughput_basis=basis,
        train_seconds=train_s, generate_seconds=gen_s, startup_seconds=startup_s,
        gpu_seconds=gpu_s, usd=usd,
        memory_gib={k: round(v, 2) for k, v in memory.items()} if memory else None,
        memory_budget_gib=budget(accelerator_type) if accelerator_type in GPU_GIB else None,
        steps=steps, serving=serve, worst_usd=_worst(steps, serve),
    )


def check_memory(est: Estimate) -> None:
    """One line, exit 2, nothing sent, when a GPU step needs more than its GPU has by the memory
    arithmetic: it would run out of memory after the paid steps before it."""
    from components.common.entrypoint import LOWER_IT
    from planning.memory import GPU_GIB

    usable = GPU_GIB.get(est.accelerator_type)
    for step, gib in (est.memory_gib or {}).items():
        if usable and gib > usable:
            raise InputError(
                f"{step} needs about {gib:.1f} GiB by the memory arithmetic, more than the "
                f"{usable} GiB one {est.accelerator_type} has; lower {LOWER_IT[step.replace('-', '_')]}")


def check_max_cost(est: Estimate, max_cost: float | None) -> None:
    """One line, exit 2 (InputError), nothing sent, when the worst case (every GPU step to its
    deadline, plus serving) or the expected cost is above the cap."""
    if max_cost is None:
        return
    if est.usd > max_cost:
        raise InputError(
            f"estimated cost ${est.usd:.2f} (profile {est.profile}, {est.gpu_seconds / 3600:.2f} "
            f"GPU hours at ${est.price_per_hour:.4f}/h) is above --max-cost ${max_cost:.2f}; "
            "raise --max-cost, or pick a smaller profile, Spot capacity or fewer max_steps"
        )
    if est.worst_usd > max_cost:
        hours = sum(v["timeout_seconds"] for v in est.steps.values()) / 3600
        raise InputError(
            f"worst case ${est.worst_usd:.2f} (every GPU step running to its timeout, {hours:.2f} "
            f"h in all{', plus serving' if est.serving else ''}; expected ${est.usd:.2f}) is above "
            f"--max-cost ${max_cost:.2f}; raise --max-cost, or shorten the timeouts "
            "(compile.py --timeout / DOLLY_LORA_TRAIN_TIMEOUT)"
        )


def sweep_estimate(single: Estimate, trials: dict[str, Estimate]) -> Estimate:
    """The whole sweep: every trial's fine-tune (its own expected time, each to the compiled
    fine-tune deadline in the worst case) and the other GPU steps once (the winner's)."""
    ft = single.steps["fine-tune"]
    steps = {f"fine-tune {name}": {**t.steps["fine-tune"],
                                   "timeout_seconds": ft["timeout_seconds"]}
             for name, t in trials.items()}
    steps.update({k: v for k, v in single.steps.items() if k != "fine-tune"})
    train_s = sum(t.train_seconds for t in trials.values())
    startup_s = single.startup_seconds + ft["startup_seconds"] * (len(trials) - 1)
    usd = sum((v["run_seconds"] + v["startup_seconds"]) / 3600 * v["usd_per_hour"]
              for v in steps.values()) + (single.serving["usd"] if single.serving else 0.0)
    return replace(single, steps=steps, train_seconds=train_s, startup_seconds=startup_s,
                   train_tokens=sum(t.train_tokens for t in trials.values()),
                   gpu_seconds=train_s + single.generate_seconds + startup_s, usd=usd,
                   worst_usd=_worst(steps, single.serving))
