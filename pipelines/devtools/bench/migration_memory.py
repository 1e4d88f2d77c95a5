"""``flowaudit bench --migration``: what the migration audit keeps, in bytes
and resident memory, for N app events over S stores in one day.

The events are made already tagged (the tagger is not what is measured)
and fed in batches, as the pipeline does: each batch's inventory changes
go into the day's section (``MigrationDay``: what the day-closing step
holds until the day closes), then the day closes into the ledger (state
per store cell). Printed: the section's and the ledger's serialised sizes,
the same day kept as a list of ``Op`` tuples (per record) for comparison,
and the process's peak RSS at each stage. Figures, never asserted.
"""

from __future__ import annotations

import json
import pickle
import random
import resource
import time
from collections.abc import Iterator
from typing import Any

from pipelines.audits.migration.audit import subject_fingerprints
from pipelines.audits.migration.changelog import ledger_entries
from pipelines.audits.migration.inventory import inventory_ops
from pipelines.audits.migration.ledger import MigrationLedger
from pipelines.audits.migration.policy import load_migration_policy
from pipelines.audits.migration.summary import MigrationDay
from pipelines.audits.residency.tagging import DestinationTag, OriginTag
from pipelines.core.days import day_start_ms

__all__ = ["bench_migration"]

DAY = "2026-11-20"
_ORIGIN = OriginTag("US", "declared", "oci", "us-ashburn-1", "US")
_PLACES = [("oci", "us-ashburn-1", "US"), ("oci", "us-phoenix-1", "US"), ("aws", "us-east-1", "US"), ("gcp", "europe-west1", "BE"),
           ("internal", "corp-us-east", "US")]
_ACTIONS = ["store"] * 12 + ["write"] * 5 + ["transfer"] * 2 + ["delete"]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _batches(events: int, stores: int, subjects: int, batch_size: int, seed: int) -> Iterator[list[dict[str, Any]]]:
    rng = random.Random(seed)
    start = day_start_ms(DAY)
    destinations = [DestinationTag(*_PLACES[i % len(_PLACES)], "cidr", None) for i in range(stores)]
    for first in range(0, events, batch_size):
        batch = []
        for n in range(first, min(events, first + batch_size)):
            store = rng.randrange(stores)
            batch.append({"event_id": f"e{n}", "event_time_ms": start + n * 86_400_000 // events, "server_id": f"app-{n % 40:03d}",
                          "user_id": f"user-{rng.randrange(subjects)}", "action": rng.choice(_ACTIONS),
                          "data_categories": [rng.choice(("pii.contact", "content.video"))], "dest_host": f"store-{store:05d}",
                          "dest_ip": None, "bytes": rng.randrange(1_000, 200_000), "_origin": _ORIGIN, "_destination": destinations[store]})
        yield batch


def bench_migration(events: int = 1_000_000, stores: int = 10_000, subjects: int = 200_000, batch_size: int = 500,
                    seed: int = 1) -> dict[str, Any]:
    fingerprint = subject_fingerprints(b"bench key")
    before = _peak_rss_mb()
    section = MigrationDay()
    started = time.perf_counter()
    for batch in _batches(events, stores, subjects, batch_size, seed):
        section.add_observed(inventory_ops(batch, fingerprint), 0)
    fed_s = time.perf_counter() - started
    after_feed = _peak_rss_mb()
    section_bytes = len(pickle.dumps(section))
    after_pickle = _peak_rss_mb()
    ledger = MigrationLedger(load_migration_policy())
    started = time.perf_counter()
    outcome = ledger.close_day(DAY, day_start_ms(DAY), section.ops, [], fingerprint)
    close_s = time.perf_counter() - started
    after_close = _peak_rss_mb()
    ops = len(section.ops)
    entries = ledger_entries(ledger)
    after_entries = _peak_rss_mb()
    # Last, as it builds a million objects: the same day kept as per-record Op tuples, for comparison.
    per_record_bytes = len(pickle.dumps(list(section.ops)))
    return {"events": events, "stores": stores, "subjects_pool": subjects, "inventory_ops": ops,
            "cells": len(ledger.inventory.cells), "lineage_edges": len(ledger.inventory.edges),
            "cells_past_exact_bound": sum(not c.subjects.is_exact for c in ledger.inventory.cells.values()),
            "day_section_bytes": section_bytes, "day_as_op_tuples_bytes": per_record_bytes,
            "section_bytes_per_op": round(section_bytes / max(1, ops), 1),
            "ledger_changelog_bytes": sum(len(k) + len(v) for k, v in entries.items()), "ledger_entries": len(entries),
            "ledger_bytes_per_cell": round(sum(len(v) for v in entries.values()) / max(1, len(ledger.inventory.cells)), 1),
            "residual_stores": len(outcome.section["residual_copies"]), "findings": len(outcome.findings),
            "feed_seconds": round(fed_s, 1), "close_seconds": round(close_s, 1),
            "peak_rss_mb": {"start": round(before), "after_feeding_the_day": round(after_feed), "after_pickling_it": round(after_pickle),
                            "after_closing_it": round(after_close), "after_its_changelog": round(after_entries)}}


def main_migration(events: int, stores: int) -> int:
    figures = bench_migration(events, stores)
    print(f"migration inventory: {figures['events']:,} app events over {figures['stores']:,} stores -> {figures['inventory_ops']:,} "
          f"inventory changes, {figures['cells']:,} cells ({figures['cells_past_exact_bound']:,} past the exact subject bound)")
    print(f"  the open day, as the day-closing step holds it: {figures['day_section_bytes'] / 1e6:.1f} MB "
          f"({figures['section_bytes_per_op']} bytes a change; as Op tuples {figures['day_as_op_tuples_bytes'] / 1e6:.1f} MB, "
          f"{figures['day_as_op_tuples_bytes'] / max(1, figures['day_section_bytes']):.1f}x)")
    print(f"  the ledger after the day: {figures['ledger_entries']:,} changelog entries, {figures['ledger_changelog_bytes'] / 1e6:.1f} MB "
          f"({figures['ledger_bytes_per_cell']} bytes a cell); {figures['residual_stores']:,} stores with residual copies, "
          f"{figures['findings']:,} findings")
    rss = figures["peak_rss_mb"]
    print(f"  peak RSS: {rss['start']} MB at start, {rss['after_feeding_the_day']} MB with the day fed, {rss['after_pickling_it']} MB "
          f"pickled (as the runner stores it), {rss['after_closing_it']} MB after closing it into the ledger, "
          f"{rss['after_its_changelog']} MB with its changelog; fed in {figures['feed_seconds']} s, closed in {figures['close_seconds']} s")
    print(json.dumps(figures))
    return 0
