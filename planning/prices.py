"""The one price table: USD per hour of a whole machine (vCPUs + memory + GPUs), by capacity,
each figure with its source and the date it was read.

Vertex AI custom-training rates (what a custom job is billed) were searched for on
2026-12-07 in the stored copy of cloud.google.com/vertex-ai/pricing: its machine tables were not
in what could be read, so no Vertex AI g2 or NVIDIA_L4 training or prediction rate is known here
(the one custom-training figure found, n1-standard-4 at $0.21849885/h in a transcription of that
page read 2026-10-07, is above that machine's Compute Engine price). Until one is entered, every
figure is the Compute Engine list price, marked so: an estimate below what Vertex bills. Give
your own rate (billing SKU) with `--param gpu_hourly_usd=RATE`.
"""

from __future__ import annotations

from dataclasses import dataclass

from planning.machines import G2_MACHINES


@dataclass(frozen=True)
class Price:
    usd_per_hour: float
    source: str


CATALOG = ("Compute Engine list price, us-central1, SkyPilot GCP catalog "
           "(github.com/skypilot-org/skypilot-catalog catalogs/v8/gcp/vms.csv at commit "
           "8427bbff, read 2026-11-28)")
NOT_VERTEX = ("no Vertex AI {use} rate found (cloud.google.com/vertex-ai/pricing, stored copy "
              "searched 2026-12-07): Vertex bills more")
# G2 bills per vCPU (each with its 4 GB) plus per L4. The catalog's g2-standard-8 is 0.29358 +
# 0.56004 on demand and 0.11747 + 0.2231 Spot; its g2-standard-48 (1.7615 + 4 x 0.56004) is the
# same per-vCPU rate, so each G2 type is priced from these two figures.
G2_PER_VCPU = {"STANDARD": 0.29358 / 8, "SPOT": 0.11747 / 8}
L4_PER_GPU = {"STANDARD": 0.56004, "SPOT": 0.2231}


def price(machine_type: str, capacity: str, use: str = "custom-training") -> Price | None:
    """The price of `machine_type` on `capacity` (STANDARD, SPOT; FLEX_START: the on-demand
    price, an upper bound) for `use` (custom-training, prediction), or None."""
    cap = "STANDARD" if str(capacity) == "FLEX_START" else str(capacity)
    m = G2_MACHINES.get(machine_type)
    if m is None or cap not in G2_PER_VCPU:
        return None
    usd = int(m.cpu) * G2_PER_VCPU[cap] + m.accelerator_count * L4_PER_GPU[cap]
    note = "; FLEX_START at the on-demand price" if str(capacity) == "FLEX_START" else ""
    return Price(round(usd, 5), f"{CATALOG}; {NOT_VERTEX.format(use=use)}{note}")


def hourly_price(machine_type: str, capacity: str) -> float | None:
    """USD/hour of `machine_type` on `capacity`, or None."""
    found = price(machine_type, capacity)
    return None if found is None else found.usd_per_hour


PRICE_SOURCE = price("g2-standard-8", "STANDARD").source  # type: ignore[union-attr]
