"""`submit endpoints`: this project's endpoints, what each costs per hour and until when.

    uv run submit --project P --region us-central1 endpoints
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import typer

from cli.app import app, guard, location, options


def endpoint_rows(project: str, region: str, clients: Any = None,
                  now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """One row per endpoint labelled source=dolly-lora: its deployed models with machine and
    replicas, its age, its hourly cost (the serving machine's list price x the minimum replicas,
    which bill answering or not) and its time to live."""
    from components.deploy import deploy as d  # the step's public API (its __all__)
    from components.deploy import ttl
    from planning.prices import hourly_price

    now = now or dt.datetime.now(dt.UTC)
    clients = clients or d.Clients.for_region(region)
    rows = []
    for e in d.list_endpoints(project, region, clients):
        deployed, hourly, priced = [], 0.0, True
        for m in e.deployed_models:
            r = m.dedicated_resources
            price = hourly_price(r.machine_spec.machine_type, "STANDARD")
            priced = priced and price is not None
            hourly += (price or 0.0) * r.min_replica_count
            deployed.append({
                "id": m.id, "model": f"{m.model}@{m.model_version_id}",
                "machine": f"{r.machine_spec.machine_type} + {r.machine_spec.accelerator_count} x "
                           f"{getattr(r.machine_spec.accelerator_type, 'name', '')}",
                "replicas": f"{r.min_replica_count}-{r.max_replica_count}"})
        until = ttl.parse_until_label(e.labels.get("ttl-until", ""))
        rows.append({
            "endpoint": e.name, "display_name": e.display_name,
            "age_hours": round((now - e.create_time).total_seconds() / 3600, 1)
            if e.create_time else None,
            "deployed": deployed,
            "replicas": sum(m.dedicated_resources.min_replica_count for m in e.deployed_models),
            "hourly_usd": round(hourly, 2) if priced else None,
            "ttl_until": until.isoformat() if until and deployed else None,
            "ttl_hours_left": round((until - now).total_seconds() / 3600, 1)
            if until and deployed else None,
        })
    return rows


@app.command("endpoints")
def endpoints(ctx: typer.Context) -> None:
    """List this project's endpoints (label source=dolly-lora): deployed models, replicas, age,
    hourly cost and time to live; one JSON line each, the total on stderr."""
    opts = options(ctx)

    def body() -> None:
        from cli.failures import require_credentials

        project, region = location(opts)
        require_credentials("Vertex AI")
        rows = endpoint_rows(project, region)
        for row in rows:
            print(json.dumps(row))
        total = sum(r["hourly_usd"] or 0.0 for r in rows)
        untimed = sum(1 for r in rows if r["deployed"] and not r["ttl_until"])
        typer.secho(f"{len(rows)} endpoint(s), about ${total:.2f}/h while deployed"
                    + (f"; {untimed} without a TTL (serving until `submit undeploy`)"
                       if untimed else ""), fg=typer.colors.YELLOW, err=True)

    guard(body, "Vertex AI")
