"""The run report: one self-contained HTML page (and a short Markdown summary) from the run's data.

Why self-contained: the Vertex console shows an `HTML` artifact in a sandboxed frame, and people
download reports and open them offline; so figures are PNGs embedded as data URIs, styles are
inline, and nothing is fetched. Everything shown comes from the run's own artifacts: the splits,
the adapter's training log, the evaluation results and the inference predictions.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import math
from pathlib import Path
from typing import Any

from components.common.config import HEADLINE_METRICS, PipelineConfig, ReportConfig
from components.common.results import (
    METRICS_FILE,
    CategoryResult,
    EvaluatedArtifact,
    Evaluation,
    Interval,
    Predictions,
    PreparedData,
    Scores,
    TrainMetrics,
    other_way,
)
from components.common.rows import count_reasons, reason_kind
from components.common.trials import SWEEP_FILE, Choice, from_json, settings_label

SAMPLE_PROMPTS = 12
TEMPLATE = Path(__file__).with_name("template.html.j2")


def _read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def _read_json(path: Path, default: Any) -> Any:
    return json.loads(path.read_text()) if path.exists() else default


__all__ = ["collect", "reason_kind", "render_html", "render_markdown", "write_report"]


def data_summary(splits: dict[str, str], meta: PreparedData) -> dict[str, Any]:
    """Rows per split and category, rejected rows by reason, token lengths of kept rows."""
    rows = {name: _read_jsonl(path) for name, path in splits.items()}
    kept = [r for name in ("train", "validation", "test") for r in rows.get(name, [])]
    lengths = sorted(int(r["num_tokens"]) for r in kept if "num_tokens" in r)
    cats = sorted({r["category"] for r in kept})

    def pct(q: float) -> int | None:
        return lengths[min(len(lengths) - 1, int(q * len(lengths)))] if lengths else None

    return {
        "source_rows": meta.source_rows,
        "filtered_rows": meta.filtered_rows,
        "kept_rows": len(kept),
        "split_rows": {n: len(rows.get(n, [])) for n in ("train", "validation", "test")},
        "rejected_rows": len(rows.get("rejected", [])),
        "rejected_by_reason": count_reasons(r.get("reason", "?") for r in rows.get("rejected", [])),
        "categories": {
            c: {n: sum(r["category"] == c for r in rows.get(n, [])) for n in ("train", "validation", "test")}
            for c in cats
        },
        "token_lengths": lengths,
        "token_stats": {"min": pct(0), "p50": pct(0.5), "p95": pct(0.95), "max": pct(1.0)},
        "split_hash": meta.split_hash or None,
        # Selected categories with no test row: no per-category verdict can be given for them.
        "categories_without_test_rows": sorted(
            set(meta.categories_without_test_rows)
            | {c for c in cats if not any(r["category"] == c for r in rows.get("test", []))}
        ),
        "renamed_categories": dict(meta.renamed_categories),
    }


def pick_samples(rows: list[dict[str, Any]], n: int = SAMPLE_PROMPTS) -> list[dict[str, Any]]:
    """Up to `n` test rows, round-robin over categories so every category shows."""
    by_cat: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(rows, key=lambda r: (r["category"], r["id"])):
        by_cat.setdefault(r["category"], []).append(r)
    out: list[dict[str, Any]] = []
    while len(out) < n and any(by_cat.values()):
        for cat in sorted(by_cat):
            if by_cat[cat] and len(out) < n:
                out.append(by_cat[cat].pop(0))
    return out


def step_costs(
    step_seconds: dict[str, float | None], gpu_steps: set[str], gpu_hourly_usd: float,
    devices: dict[str, str] | None = None, prices: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Wall time per step and the estimated price of the GPU steps' machine time.

    A step counts as a GPU machine only if it asks for one AND, where it says so (`devices`),
    it ran on CUDA: a local run's fine-tune on a laptop CPU is neither a GPU machine nor billed."""
    devices, prices = devices or {}, prices or {}  # prices: USD/h of each step's own machine

    def on_gpu(step: str) -> bool:
        return step in gpu_steps and devices.get(step, "cuda") == "cuda"

    steps = [
        {"step": s, "seconds": sec, "gpu": on_gpu(s), "asks_gpu": s in gpu_steps,
         "device": devices.get(s, ""),
         "cost_usd": (sec or 0) / 3600 * prices.get(s, gpu_hourly_usd) if on_gpu(s) else 0.0}
        for s, sec in step_seconds.items()
    ]
    gpu_seconds = sum(s["seconds"] or 0 for s in steps if s["gpu"])
    return {
        "steps": steps,
        "total_seconds": sum(s["seconds"] or 0 for s in steps),
        "gpu_seconds": gpu_seconds,
        "gpu_hourly_usd": gpu_hourly_usd,
        "gpu_cost_usd": sum(s["cost_usd"] for s in steps),
    }


def collect(
    splits: dict[str, str],
    split_meta: dict[str, Any],
    model_dir: str,
    model_meta: dict[str, Any],
    eval_path: str,
    eval_meta: dict[str, Any],
    predictions_path: str,
    predictions_meta: dict[str, Any],
    gpu_hourly_usd: float,
    run_id: str = "",
    run_name: str = "",
    gpu_steps: set[str] | None = None,
    cost_estimate: str = "",
    data_card_path: str = "",
    sweep_path: str = "",
) -> dict[str, Any]:
    """Everything the report shows, as plain data (also what the tests inspect). `gpu_steps`:
    the steps that ran on a GPU machine (the pipeline passes what it compiled); `cost_estimate`:
    the pre-run estimate `submit` computed (JSON), shown next to what the run took."""
    from components.report import estimate

    model = Path(model_dir)
    prepared = PreparedData.read(split_meta)
    evaluated = EvaluatedArtifact.read(eval_meta)
    results = Evaluation.load(eval_path) if Path(eval_path).is_file() else None
    history = _read_json(model / "log_history.json", [])
    # The GPU steps' own numbers come from the files they wrote: on Vertex they are custom jobs,
    # whose artifact metadata never reaches this step.
    training = TrainMetrics.read({**model_meta, **_read_json(model / METRICS_FILE, {})})
    pred_dir = Path(predictions_path)
    if pred_dir.is_dir():
        predictions_meta = {**predictions_meta, **_read_json(pred_dir / "summary.json", {})}
        predictions_path = str(pred_dir / "predictions.jsonl")
    steps = {
        "prepare-data": prepared.step_seconds,
        "fine-tune": training.step_seconds,
        "evaluate": results.step_seconds if results and results.step_seconds is not None
        else evaluated.step_seconds,
        "inference": Predictions.read(predictions_meta).step_seconds,
    }
    gpu_steps = set(gpu_steps if gpu_steps is not None else ("fine-tune", "evaluate", "inference"))
    devices = {s: d for s, d in (("fine-tune", training.device),
                                 ("evaluate", results.device if results else ""),
                                 ("inference", Predictions.read(predictions_meta).device)) if d}
    preds = _read_jsonl(predictions_path)
    training_config = _read_json(model / "training_config.json", {})
    train_curve = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    val_curve = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h and "step" in h]
    pre_run = estimate.parse(cost_estimate)
    cost = step_costs(steps, gpu_steps, gpu_hourly_usd, devices, estimate.step_prices(pre_run))
    return {
        "estimate": {"profile": pre_run.get("profile"), "basis": pre_run.get("throughput_basis"),
                     "rows": estimate.compare(pre_run, training, cost)},
        "run_id": run_id,
        # `submit --run-id` (also the checkpoint key) names the run for people; the pipeline job
        # name stays next to it, as that is what the Vertex console and W&B group show.
        "run_name": run_name or training_config.get("run_name") or "",
        "results": results,
        "headline": results.headline if results else None,
        "categories": results.categories if results else {},
        "samples": pick_samples(results.rows if results else []),
        "train_curve": train_curve,
        "val_curve": val_curve,
        "overfitting": overfitting(train_curve, val_curve, training),
        "training": training,
        "config": {
            "data": typed_config(prepared.config),
            "training": typed_config(training_config),
            "evaluation": typed_config(results.config if results else {}),
        },
        "data": data_summary(splits, prepared),
        "card": _read_json(Path(data_card_path), {}) if data_card_path else {},
        "sweep": read_sweep(sweep_path),
        "cost": cost,
        "inference": dataclasses.replace(Predictions.read(predictions_meta), rows=len(preds)),
        "wandb": {
            s: u for s, u in (
                ("prepare-data", prepared.wandb_url),
                ("fine-tune", training.wandb_url),
                ("evaluate", evaluated.wandb_url or (results.wandb_url if results else "")),
                ("inference", Predictions.read(predictions_meta).wandb_url),
            ) if u
        },
    }


def typed_config(values: dict[str, Any]) -> dict[str, Any]:
    """Parameter values with their declared types back: KFP metadata turns every int into a
    float (seed 42 -> 42.0), which the configuration table would print as is."""
    fields = PipelineConfig.model_fields
    out = {}
    for k, v in values.items():
        f = fields.get(k)
        if f is not None and f.annotation is int and isinstance(v, float) and v.is_integer():
            v = int(v)
        out[k] = v
    return out


def overfitting(
    train: list[tuple[float, float]], val: list[tuple[float, float]], training: TrainMetrics
) -> str:
    """One sentence when validation loss rose (by over 1%) after its lowest point while training
    loss kept falling; '' otherwise. Says which adapter was kept."""
    if len(val) < 2 or not train:
        return ""
    best_step, best = min(val, key=lambda p: p[1])
    last_step, last = val[-1]
    if last_step <= best_step or last <= best * 1.01:
        return ""
    steps, losses = zip(*train, strict=True)
    smooth = smoothed(list(losses))

    def train_at(step: float) -> float:
        i = max((i for i, s in enumerate(steps) if s <= step), default=0)
        return smooth[i]

    t_best, t_last = train_at(best_step), train_at(last_step)
    if t_last >= t_best:
        return ""
    epochs, rows, kept = training.epochs, training.train_rows, training.kept_step
    span = (f" ({epochs:.1f} epochs over {rows} training rows)" if epochs and rows else "")
    keep = (f" The adapter kept is the one from step {kept}, where validation loss was lowest."
            if kept is not None and kept == int(best_step) else
            " The adapter kept is the last one.")
    return (f"Overfitting: validation loss rose from {best:.3f} at step {int(best_step)} to "
            f"{last:.3f} at step {int(last_step)} while training loss fell from {t_best:.3f} to "
            f"{t_last:.3f}{span}.{keep} Fewer steps, more data or a lower learning rate would "
            "use the compute better.")


# ---------------------------------------------------------------- figures (PNG data URIs)


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(w: float, h: float) -> Any:
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    return Figure(figsize=(w, h))


def smoothed(values: list[float], weight: float = 0.6) -> list[float]:
    """Debiased exponential moving average, as TensorBoard and W&B smooth curves.

    Why: batches are length-bucketed, so each step's loss also reflects its batch's length;
    the trend is what the reader wants, next to the raw points."""
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight**i))
    return out


def fig_loss_curves(train: list[tuple[float, float]], val: list[tuple[float, float]]) -> str:
    fig = _figure(7, 3.2)
    ax = fig.add_subplot()
    if train:
        steps, losses = zip(*train, strict=True)
        if len(train) >= 8:
            ax.plot(steps, losses, color="#1f77b4", alpha=0.3, label="training loss (per log)")
            ax.plot(steps, smoothed(list(losses)), color="#1f77b4", label="training loss, smoothed")
        else:
            ax.plot(steps, losses, label="training loss", color="#1f77b4")
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation loss", color="#d62728")
    if not train and not val:
        ax.text(0.5, 0.5, "no training log", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats / response token)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    return _png(fig)


def read_sweep(path: str) -> Choice | None:
    """The sweep's choice from its artifact (a folder holding `sweep.json`, or the file itself);
    None for a single-setting run, whose report stays as it was."""
    if not path:
        return None
    p = Path(path)
    p = p / SWEEP_FILE if p.is_dir() else p
    return from_json(p.read_text(encoding="utf-8")) if p.is_file() else None


def fig_trial_curves(choice: Choice) -> str:
    """Every trial's validation loss during training, on one plot; the winner drawn bold."""
    fig = _figure(7, 3.2)
    ax = fig.add_subplot()
    drawn = False
    for t in choice.trials:
        if not t.get("curve"):
            continue
        steps, losses = zip(*t["curve"], strict=True)
        won = t["name"] == choice.winner
        ax.plot(steps, losses, "o-", lw=2.5 if won else 1.2, ms=4 if won else 2.5,
                label=f"{t['name']}: {settings_label(t['settings'], t['name'])}"
                + (" (chosen)" if won else ""))
        drawn = True
    if not drawn:
        ax.text(0.5, 0.5, "no validation curve", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("validation loss (nats / token)")
    ax.grid(alpha=0.3)
    return _png(fig)


def trial_rows(choice: Choice) -> list[dict[str, str]]:
    """The trials table's cells, formatted once for the HTML and the Markdown."""
    out = []
    for t in choice.trials:
        d = t.get("diff_vs_best")
        diff = ("best" if t.get("best") else "—" if d is None else
                f"{d['estimate']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]")
        out.append({
            "name": t["name"], "settings": settings_label(t["settings"], t["name"]),
            "loss": _fmt(t.get("validation_loss")), "diff": diff,
            "same": "yes" if t.get("overlaps_best") else "no",
            "seconds": _fmt(t.get("train_seconds"), 0),
            "tps": _fmt(t.get("tokens_per_second"), 0),
            "cost": "—" if t.get("cost_usd") is None else f"${t['cost_usd']:.2f}",
            "chosen": "chosen" if t["name"] == choice.winner else "",
        })
    return out


def test_split_sentence(choice: Choice) -> str:
    rows = f"its {choice.rows} validation rows" if choice.rows else "the validation rows"
    if choice.test_split_used:
        return "The choice used the test split: the test numbers above are not independent of it."
    return (f"The choice of trial did not see the test split: it read {rows} only; the test split "
            "scored the winner alone, once, against the base.")


TOO_FEW_COLOR = "#c7c7c7"


def interval_color(headline: Interval) -> str:
    """Green: the interval is above 0 (tuned better); red: below 0 (worse); grey: not
    distinguishable. Under gate_min_rows rows: light grey whatever the interval says, as the
    table says "too few to decide"."""
    if not headline.enough_rows:
        return TOO_FEW_COLOR
    if headline.improvement_low > 0:
        return "#2ca02c"
    return "#d62728" if headline.improvement_high < 0 else "#7f7f7f"


def fig_categories(categories: dict[str, CategoryResult], metric: str) -> str:
    """Left: base vs tuned per category. Right: improvement with its 95% interval."""
    import numpy as np

    cats = list(categories)
    fig = _figure(10, 0.45 * max(len(cats), 3) + 1.4)
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(cats))
    base = [getattr(categories[c].base, metric) for c in cats]
    tuned = [getattr(categories[c].tuned, metric) for c in cats]
    ax1.barh(y - 0.2, base, 0.4, label="base", color="#9e9e9e")
    ax1.barh(y + 0.2, tuned, 0.4, label="tuned", color="#1f77b4")
    ax1.invert_yaxis()
    ax1.set_xlabel(metric)
    ax1.legend(loc="lower right", fontsize=8)
    ax1.set_title(f"{metric}: base vs tuned", fontsize=10)
    h = [categories[c].headline for c in cats]
    est = np.array([x.improvement for x in h])
    lo = np.array([x.improvement_low for x in h])
    hi = np.array([x.improvement_high for x in h])
    enough = [x.enough_rows for x in h]
    colors = [interval_color(x) for x in h]
    for yi, e, lo_, hi_, col, ok in zip(y, est, lo, hi, colors, enough, strict=True):
        ax2.errorbar([e], [yi], xerr=[[e - lo_], [hi_ - e]], fmt="o", color=col, capsize=3,
                     mfc=col if ok else "white", ls="--" if not ok else "-")
        if not ok:
            ax2.annotate("too few rows to decide", (e, yi), xytext=(0, -10),
                         textcoords="offset points", ha="center", va="top", fontsize=7,
                         color="#8c8c8c")
    ax1.set_yticks(y, [f"{c} (n={categories[c].rows}{'' if ok else ', too few'})"
                       for c, ok in zip(cats, enough, strict=True)])
    ax2.axvline(0, color="black", lw=0.8)
    metric_name = h[0].metric if h else metric
    ax2.set_xlabel(f"improvement in {metric_name} (tuned over base, 95% CI)")
    ax2.set_title("is the difference real?", fontsize=10)
    for ax in (ax1, ax2):
        ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def fig_token_lengths(lengths: list[int]) -> str:
    fig = _figure(7, 2.6)
    ax = fig.add_subplot()
    if lengths:
        ax.hist(lengths, bins=min(40, max(5, len(set(lengths)))), color="#1f77b4")
    ax.set_xlabel("tokens per formatted example (prompt + response)")
    ax.set_ylabel("rows")
    ax.grid(alpha=0.3)
    return _png(fig)


# ---------------------------------------------------------------- rendering


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if digits == 0 else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if digits == 0:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}" if abs(value) < 1e5 else f"{value:.3g}"
    return str(value)


def _and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def verdict(headline: Interval | None, base: Scores | None = None,
            tuned: Scores | None = None) -> str:
    """One sentence a person can act on, then every overall metric that moved the other way
    (the gate still decides on the headline interval alone)."""
    text = _verdict(headline)
    moved = other_way(headline, base, tuned)
    if not moved:
        return text
    return f"{text} But {_and(moved)}: the other way."


def _verdict(headline: Interval | None) -> str:
    if headline is None:
        return "No evaluation results."
    m = headline.metric
    unit = HEADLINE_METRICS.get(m, {}).get("unit", "")
    span = (f"{_fmt(headline.improvement)} {unit} (95% interval {_fmt(headline.improvement_low)} "
            f"to {_fmt(headline.improvement_high)}, {headline.rows} test rows)")
    if not headline.enough_rows:
        return (f"Too few test rows to decide ({headline.rows} scored, `gate_min_rows` is "
                f"{headline.min_rows}): the gate needs "
                f"at least {headline.min_rows} (gate_min_rows). The {m} improvement would be "
                f"{span}, but an interval from so few rows is too narrow to trust, so the gate "
                "stays closed and nothing is registered. Use more data or a larger test_fraction.")
    if headline.tuned_better:
        return (f"Fine-tuning helped: {m} improved by {span}. The interval's lower end is above the "
                f"gate threshold {_fmt(headline.threshold)}, so the tuned model passes the gate.")
    return (f"Fine-tuning is not shown to help on {m}: improvement {span}. The interval's lower end "
            f"is not above the gate threshold {_fmt(headline.threshold)}, so the gate stays closed.")


def _scores(data: dict[str, Any]) -> tuple[Scores | None, Scores | None]:
    r = data.get("results")
    return (r.base, r.tuned) if r else (None, None)


def render_html(data: dict[str, Any]) -> str:
    import jinja2

    metric = data["headline"].metric if data["headline"] else "loss"
    figures = {
        "loss_curves": fig_loss_curves(data["train_curve"], data["val_curve"]),
        "token_lengths": fig_token_lengths(data["data"]["token_lengths"]),
    }
    if data["categories"]:
        figures["categories"] = fig_categories(data["categories"], metric)
    if data.get("sweep"):
        figures["trials"] = fig_trial_curves(data["sweep"])
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["fmt"] = _fmt
    env.globals.update(data_notes=data_notes, step_note=step_note, card_lines=card_lines,
                       trial_rows=trial_rows, test_split_sentence=test_split_sentence)
    return env.from_string(TEMPLATE.read_text()).render(
        d=data, figures=figures, verdict=verdict(data["headline"], *_scores(data)),
        verdict_class=verdict_class(data["headline"]),
        metrics=["loss", "perplexity", "rougeL", "exact_match"],
    )


def verdict_class(headline: Interval | None) -> str:
    """'pass' (green), 'undecided' (grey: too few rows) or 'fail' (orange)."""
    if headline and not headline.enough_rows:
        return "undecided"
    return "pass" if headline and headline.tuned_better else "fail"


def data_notes(d: dict[str, Any]) -> list[str]:
    """Sentences about the data a reader must not miss (empty categories, renamed ones)."""
    notes = []
    if d.get("categories_without_test_rows"):
        notes.append("No test rows for the selected categor"
                     f"{'y' if len(d['categories_without_test_rows']) == 1 else 'ies'} "
                     f"{', '.join(d['categories_without_test_rows'])}: the evaluation says "
                     "nothing about them (more data or a larger test_fraction).")
    if d.get("renamed_categories"):
        notes.append("Category names normalised to Dolly's: " + ", ".join(
            f"{k} ({v} rows)" for k, v in d["renamed_categories"].items()) + ".")
    return notes


def card_lines(card: dict[str, Any]) -> list[str]:
    """The data card in sentences: where the rows came from, what was dropped and why, copies
    inside the data and between train and test, lengths against max_seq_len."""
    if not card:
        return []
    files = card.get("files", {})
    near, over, tl = card["near_duplicates"], card["train_test_overlap"], card["token_lengths"]
    dropped = ", ".join(f"{k}: {v}" for k, v in card["dropped"].items()) or "none"
    lines = [
        f"Format {card['format']}, {card['rows_read']:,} rows read from {card['source']}"
        + (f" (revision {card['revision']})" if card.get("revision") else "")
        + (f" in {len(files)} files" if len(files) > 1 else "") + f", {card['rows_kept']:,} kept.",
        f"Dropped: {dropped}.",
        f"Exact duplicates: {card['exact_duplicates']}; near duplicates (MinHash, Jaccard >= "
        f"{near['threshold']}): {near['rows']} rows.",
        f"Train/test overlap: {over['exact']} test rows with a training row's prompt, "
        f"{over['near']} near copies; {over['dropped']} dropped from the test split"
        + ("." if over["dropped"] or not (over["exact"] + over["near"]) else
           " (drop_test_overlap=false: they inflate the gate's verdict)."),
        f"Too long (> max_seq_len {tl['max_seq_len']} tokens): {tl['too_long']} rows "
        f"({100 * tl['too_long_share']:.1f}%), dropped, none truncated.",
    ]
    if len(files) > 1:
        lines.append("Rows per source: " + ", ".join(f"{k}: {v}" for k, v in files.items()) + ".")
    return lines


def step_note(s: dict[str, Any]) -> str:
    """Where a step ran, for the time and cost table."""
    if s["gpu"]:
        return "GPU machine"
    if s.get("asks_gpu"):
        return "CPU (no GPU here; not priced)"
    return "CPU"


def render_markdown(data: dict[str, Any]) -> str:
    """The short version: verdict, overall numbers, per category, data, time and cost."""
    r, h, cost = data["results"], data["headline"], data["cost"]
    title = f"# Run {data.get('run_name') or data['run_id'] or ''}".rstrip()
    lines = [title, "", verdict(h, *_scores(data)), ""]
    if data.get("sweep"):
        lines += sweep_markdown(data["sweep"])
    if data.get("run_name") and data["run_id"] and data["run_name"] != data["run_id"]:
        lines[1:1] = ["", f"Pipeline job `{data['run_id']}`"]
    if data.get("overfitting"):
        lines += [data["overfitting"], ""]
    if r:
        base, tuned = r.base.values(), r.tuned.values()
        lines += ["| metric | base | tuned |", "|---|---|---|"]
        for k in ("loss", "perplexity", "rougeL", "exact_match"):
            if k in base:
                lines.append(f"| {k} | {_fmt(base[k])} | {_fmt(tuned.get(k))} |")
        m = h.metric
        lines += ["", f"| category | rows | {m} base | {m} tuned | improvement (95% CI) |",
                  "|---|---|---|---|---|"]
        for cat, c in data["categories"].items():
            ch = c.headline
            few = "" if ch.enough_rows else (
                f" — too few rows (< {ch.min_rows}), not a verdict")
            lines.append(
                f"| {cat} | {c.rows} | {_fmt(getattr(c.base, m))} | {_fmt(getattr(c.tuned, m))} | "
                f"{_fmt(ch.improvement)} ({_fmt(ch.improvement_low)} to "
                f"{_fmt(ch.improvement_high)}){few} |"
            )
    d = data["data"]
    reasons = ", ".join(f"{k}: {v}" for k, v in d["rejected_by_reason"].items())
    split = d["split_rows"]
    gpu = [s for s in cost["steps"] if s["gpu"]]
    lines += [
        "",
        f"Data: {d['kept_rows']} rows kept ({split['train']} train / {split['validation']} "
        f"validation / {split['test']} test), {d['rejected_rows']} rejected"
        + (f" ({reasons})" if reasons else "") + ".",
        *data_notes(d),
        *(["", "Data card:", "", *(f"- {line}" for line in card_lines(data.get("card", {}))),
           "", "| tokens | rows |", "|---|---|",
           *(f"| {b['lo']}-{b['hi']} | {b['rows']} |"
             for b in data["card"]["token_lengths"]["histogram"] if b["rows"]), ""]
          if data.get("card") else []),
        f"Time: {_fmt(cost['total_seconds'], 1)} s in steps"
        + (f", {_fmt(cost['gpu_seconds'], 1)} s on GPU machines, estimated "
           f"${cost['gpu_cost_usd']:.4f} at ${cost['gpu_hourly_usd']:.2f}/h."
           if gpu else ", no step ran on a GPU machine (no GPU cost)."),
    ]
    if data.get("estimate", {}).get("rows"):
        lines += ["", f"Estimate before the run (profile {data['estimate']['profile']}) vs actual:",
                  "", "| | estimated | actual | actual / estimated |", "|---|---|---|---|"]
        lines += [f"| {r['what']} | {_fmt(r['estimated'])} | {_fmt(r['actual'])} | "
                  f"{_fmt(r['ratio'])} |" for r in data["estimate"]["rows"]]
    if data["wandb"]:
        lines += ["", "W&B: " + ", ".join(f"[{s}]({u})" for s, u in data["wandb"].items())]
    return "\n".join(lines) + "\n"


def sweep_markdown(choice: Choice) -> list[str]:
    lines = [f"## Trials ({len(choice.trials)})", "", choice.why, "", test_split_sentence(choice),
             "", f"| trial | settings | validation loss | vs best ({choice.confidence:.0%} "
             "interval) | indistinguishable | train s | tokens/s | cost |",
             "|---|---|---:|---|---|---:|---:|---:|"]
    for r in trial_rows(choice):
        name = f"**{r['name']}** (chosen)" if r["chosen"] else r["name"]
        lines.append(f"| {name} | {r['settings']} | {r['loss']} | {r['diff']} | {r['same']} | "
                     f"{r['seconds']} | {r['tps']} | {r['cost']} |")
    return [*lines, ""]


def write_report(data: dict[str, Any], html_path: str, markdown_path: str) -> None:
    for path, text in ((html_path, render_html(data)), (markdown_path, render_markdown(data))):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text, encoding="utf-8")


def run_report(
    cfg: ReportConfig, *, train: str, validation: str, test: str, rejected: str, model: str,
    generations: str, predictions: str, html: str, markdown: str, data_card: str = "",
    gpu_steps: str = "",
    rejected_metadata: dict[str, Any] | None = None, model_metadata: dict[str, Any] | None = None,
    generations_metadata: dict[str, Any] | None = None,
    predictions_metadata: dict[str, Any] | None = None, run_id: str = "", sweep: str = "",
) -> dict[str, dict[str, Any]]:
    """Collect the run's data, write the HTML and Markdown reports, log the HTML to the
    trackers. `gpu_steps`: comma-separated steps that ran on GPU machines (for the cost)."""
    from components.common.config import split_csv
    from components.common.step import step_run

    with step_run("report", cfg, run_id, output_path=html) as step:
        data = collect(
            splits={"train": train, "validation": validation, "test": test, "rejected": rejected},
            split_meta=rejected_metadata or {}, model_dir=model, model_meta=model_metadata or {},
            eval_path=generations, eval_meta=generations_metadata or {},
            predictions_path=predictions, predictions_meta=predictions_metadata or {},
            gpu_hourly_usd=cfg.gpu_hourly_usd, run_id=run_id, run_name=cfg.run_name,
            gpu_steps=set(split_csv(gpu_steps)), cost_estimate=cfg.cost_estimate,
            data_card_path=data_card, sweep_path=sweep,
        )
        write_report(data, html, markdown)
        step.tracker.log_html("report", Path(html).read_text(encoding="utf-8"))
        step.tracker.summary({"gpu_cost_usd": data["cost"]["gpu_cost_usd"],
                              "pipeline_seconds": data["cost"]["total_seconds"]})
        url = step.tracker.url or ""
        tracking = step.tracker.report()
    tuned_better = bool(data["headline"] and data["headline"].tuned_better)
    return {"html": {"wandb_url": url, "tuned_better": tuned_better, "tracking": tracking},
            "markdown": {"wandb_url": url, "tracking": tracking}}
