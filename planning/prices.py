"""Prices: USD per hour of a whole machine, by capacity.

us-central1 Compute Engine list prices of the G2 machine (vCPUs + memory) plus its L4s, from
SkyPilot's GCP catalog (github.com/skypilot-org/skypilot-catalog, catalogs/v8/gcp/vms.csv at
commit 8427bbff988abdd050a9f51addd314ef31cb4e85, read 2026-11-28). Spot prices change (at most
once a day) and FLEX_START has no list price here, so it is estimated at the on-demand price, an
upper bound. Vertex AI custom training bills these machines at its own training rates
(cloud.google.com/vertex-ai/pricing): `--param gpu_hourly_usd=RATE` gives yours to the estimate
and the report.
"""

from __future__ import annotations

from planning.machines import G2_STANDARD_8, G2_STANDARD_48

# (machine type, capacity) -> machine + its GPUs.
MACHINE_PRICES: dict[tuple[str, str], float] = {
    (G2_STANDARD_8.machine_type, "STANDARD"): 0.29358 + 0.56004,  # + 1 x L4
    (G2_STANDARD_8.machine_type, "SPOT"): 0.11747 + 0.2231,
    (G2_STANDARD_48.machine_type, "STANDARD"): 1.7615 + 2.24016,  # + 4 x L4
    (G2_STANDARD_48.machine_type, "SPOT"): 0.70483 + 0.8924,
}
PRICE_SOURCE = ("Compute Engine list price, us-central1, SkyPilot GCP catalog at commit 8427bbff "
                "(read 2026-11-28)")


def hourly_price(machine_type: str, capacity: str) -> float | None:
    """USD/hour of `machine_type` on `capacity` (STANDARD, SPOT; FLEX_START: the on-demand
    price), or None."""
    cap = "STANDARD" if str(capacity) == "FLEX_START" else str(capacity)
    price = MACHINE_PRICES.get((machine_type, cap))
    return None if price is None else round(price, 5)
