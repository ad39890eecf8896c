"""Print the README's profile table from the tables it summarises (a test keeps them equal).

    uv run python scripts/profile_table.py

Per profile: model and precision, machine and GPUs, batch (per GPU x accumulation x processes),
memory of one GPU by the arithmetic (planning/memory.py) against its budget, training speed (and
whether measured or estimated), the machine's price on demand and on Spot, and the estimated cost
of one epoch of Dolly-15k with the whole pipeline, each GPU step on its own machine, and the worst
case with every GPU step at its timeout (planning/cost.py, the same estimate `submit` prints).
"""

from __future__ import annotations

from components.common.config import parameter_defaults
from pipelines.machines import TrainingJobSpec, gpu_step_machines
from planning import cost
from planning.memory import budget
from planning.prices import hourly_price
from planning.profiles import GPU_PROFILES
from planning.throughput import THROUGHPUT


def table() -> str:
    lines = [
        "| profile | model | precision | machine | GPUs | batch | memory / GPU (GiB) "
        "| training tokens/s | $/h on demand / Spot | one Dolly epoch |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    tokens = cost.data_tokens(parameter_defaults())
    for p in GPU_PROFILES.values():
        t = THROUGHPUT[(p.name, p.accelerator_type)]
        q = {"nf4": "QLoRA (NF4)", "none": "LoRA bf16"}[p.params["quantization"]]
        if p.processes > 1:
            q += f", {p.params['distributed'].upper()}"
        params = {**parameter_defaults(), **p.params}
        machines = gpu_step_machines(TrainingJobSpec(**p.settings), params)
        est = cost.estimate(params, p.name, p.machine_type, p.accelerator_type,
                            p.accelerator_count, "STANDARD", tokens=tokens, machines=machines)
        spot = cost.estimate(params, p.name, p.machine_type, p.accelerator_type,
                             p.accelerator_count, "SPOT", tokens=tokens, machines=machines)
        kind = "measured" if t.basis.startswith("measured") else "estimated"
        lines.append(
            f"| `{p.name}` | {p.params['base_model'].removeprefix('google/')} | {q} "
            f"| {p.machine_type} | {p.accelerator_count} x L4 "
            f"| {p.params['per_device_train_batch_size']} x "
            f"{p.params['gradient_accumulation_steps']} x {p.processes} = {p.global_batch} "
            f"| {p.fit.total:.2f} of {budget(p.accelerator_type):.2f} "
            f"| {t.train_tokens_per_s:,.0f} ({kind}) "
            f"| {hourly_price(p.machine_type, 'STANDARD'):.2f} / "
            f"{hourly_price(p.machine_type, 'SPOT'):.2f} "
            f"| {est.gpu_seconds / 3600:.2f} h, ${est.usd:.2f} (Spot ${spot.usd:.2f}; "
            f"worst case ${est.worst_usd:.2f}) |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
