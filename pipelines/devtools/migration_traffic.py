"""A migration story over several days, for the migration audit's tests and demo.

Four stores outside OCI US regions hold US users' data when the story
begins: a legacy MySQL in the corporate data centre, an S3 bucket of user
media in AWS us-east-1, an analytics export in GCP europe-west1 (filled by
transfers from the MySQL: a derived copy) and a backup vault in the data
centre. Day by day a migration job moves the MySQL's and the bucket's
subjects to OCI (transfers, then deletions at the source), app servers keep
writing to OCI, and the lifecycle topic carries what the platform says it
did: deletion requests with deadlines, receipts after NIST SP 800-88, a
scanner's nightly snapshots, the MySQL's DROP. Faults, one of each:
the bucket's receipt finds rows left (unverified, then overdue); the export
is never deleted (its request goes overdue, and once the MySQL is dropped it
is an orphaned derived copy); the backup is put beyond use without evidence
and still holds data past its date; one scanner snapshot counts more than
the events say (drift); and an app server writes to the MySQL after its
DROP (resurrection).

``generate_migration`` gives (app events, lifecycle records) as messages,
each list in event-time order; the same seed gives the same story.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from pipelines.devtools.generator import GeneratedMessage, _prefixes

__all__ = ["MigrationStory", "generate_migration", "STORES"]

# name, server/destination address, host (None: by address), categories, subjects at the start
STORES = {
    "mysql": ("legacy-mysql-1", "10.20.1.5", "legacy-mysql-1", ["pii.contact", "pii.payment"]),
    "bucket": ("legacy-user-media", None, "legacy-user-media.s3.us-east-1.amazonaws.com", ["content.video"]),
    "export": ("analytics-export", None, "analytics-export.europe-west1-a.googleapis.com", ["pii.contact"]),
    "backup": ("backup-vault-2", "10.30.0.9", "backup-vault-2", ["pii.contact", "pii.payment"]),
}
_OCI_TARGET = "objectstorage.us-ashburn-1.oraclecloud.com"
_TIME_FIELDS = {"dataset_lifecycle": "changed_at", "store_snapshot": "observed_at", "deletion_request": "requested_at",
                "deletion_receipt": "completed_at"}


def _address_in(provider: str, region: str) -> str:
    """The first usable address of the real feed's first range for that region."""
    import ipaddress

    network = ipaddress.ip_network(_prefixes(provider, region)[0])
    return str(network.network_address + 1)


@dataclass(frozen=True)
class MigrationStory:
    days: int = 4
    subjects: int = 600  # US users whose data the legacy stores hold at the start
    app_writes_per_day: int = 400
    filled_days_before: int = 30  # how long before the story the legacy stores were filled (0: in its first hour)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _namespace(store: str) -> tuple[str, str]:
    return {"mysql": ("internal://corp-us-east", "legacy-mysql-1"),
            "bucket": ("aws://us-east-1", STORES["bucket"][2]),
            "export": ("gcp://europe-west1", STORES["export"][2]),
            "backup": ("internal://corp-us-east", "backup-vault-2")}[store]


def generate_migration(story: MigrationStory = MigrationStory(), *, seed: int = 5,
                       start: datetime | None = None) -> tuple[list[GeneratedMessage], list[GeneratedMessage]]:
    """(app events, lifecycle records), the story's ``days`` whole UTC days from ``start``."""
    rng = random.Random(seed)
    start = start or datetime(2026, 11, 20, tzinfo=UTC)
    events: list[dict[str, Any]] = []
    lifecycle: list[dict[str, Any]] = []
    seqs: dict[str, int] = {}
    users = [f"mig-user-{i:05d}" for i in range(story.subjects)]
    app_server = ("app-mig-001", _address_in("oci", "us-ashburn-1"))
    bucket_server = (STORES["bucket"][2], _address_in("aws", "us-east-1"))  # the bucket's own side of a copy out of it

    def app_event(moment: datetime, server: tuple[str, str], action: str, user: str, categories: list[str],
                  dest_ip: str | None, dest_host: str | None) -> None:
        seqs[server[0]] = seqs.get(server[0], 0) + 1
        events.append({"event_id": f"mig-{seed}-{len(events):08d}", "event_time": _iso(moment), "server_id": server[0],
                       "server_ip": server[1], "seq": seqs[server[0]], "user_id": user, "user_residency": "US",
                       "client_ip": None, "action": action, "data_categories": categories, "dest_ip": dest_ip,
                       "dest_host": dest_host, "actor_id": "svc-migration", "actor_country": "US",
                       "bytes": rng.randrange(2_000, 400_000)})

    def record(kind: str, moment: datetime, **fields: Any) -> None:
        lifecycle.append({"record_type": kind, _TIME_FIELDS[kind]: _iso(moment), **fields})

    def store_fields(store: str) -> dict[str, str]:
        namespace, name = _namespace(store)
        return {"store_namespace": namespace, "store_name": name}

    # Before the story: every subject's data in the MySQL, the bucket and the backup; half copied on to the export.
    seeded = start - timedelta(days=story.filled_days_before)
    mysql_server = (STORES["mysql"][0], STORES["mysql"][1])
    for n, user in enumerate(users):
        moment = seeded + timedelta(seconds=n * 7)
        for store in ("mysql", "bucket", "backup"):
            _, ip, host, categories = STORES[store]
            app_event(moment, app_server, "store", user, categories, ip, host)
        if n % 2 == 0:
            app_event(moment + timedelta(seconds=3), mysql_server, "transfer", user, ["pii.contact"], None, STORES["export"][2])
    stamp = seeded.isoformat()[:10]
    record("deletion_request", start + timedelta(hours=1), request_id="del-export", scope="STORE", **store_fields("export"),
           deadline=_iso(start + timedelta(days=2, hours=12)), reason="migration: no copy outside OCI US", requested_by="platform-migration")
    record("deletion_request", start + timedelta(hours=1), request_id="del-backup", scope="STORE", **store_fields("backup"),
           deadline=_iso(start + timedelta(days=1, hours=12)), reason=f"migration: backups from {stamp}", requested_by="platform-migration")

    # Day by day: the MySQL and the bucket drained to OCI (transfer, then delete at the source).
    per_day = -(-story.subjects // max(1, story.days - 1))
    for day in range(story.days):
        day_start = start + timedelta(days=day)
        for n in range(story.app_writes_per_day):  # the platform's own writes, all to OCI US
            app_event(day_start + timedelta(seconds=n * 86_400 / story.app_writes_per_day), app_server, rng.choice(["write", "store"]),
                      rng.choice(users), ["pii.contact"], None, _OCI_TARGET)
        batch = users[day * per_day:(day + 1) * per_day]
        for n, user in enumerate(batch):
            moment = day_start + timedelta(hours=2, seconds=n * 20)
            for store in ("mysql", "bucket"):
                _, ip, host, categories = STORES[store]
                server = mysql_server if store == "mysql" else bucket_server
                app_event(moment, server, "transfer", user, categories, None, _OCI_TARGET)
                app_event(moment + timedelta(seconds=5), app_server, "delete", user, categories, ip, host)
        # The scanner's nightly count of the MySQL's contact data; day 1's sees 50 rows the events never mentioned.
        left = max(0, story.subjects - (day + 1) * per_day)
        record("store_snapshot", day_start + timedelta(hours=23), snapshot_id=f"scan-mysql-{day}", **store_fields("mysql"),
               data_category="pii.contact", subject_jurisdiction="US", records=left + (50 if day == 1 else 0), bytes=None, subjects=None,
               scanner="dc-scanner 3.2")
        if day == 0:
            record("deletion_receipt", day_start + timedelta(hours=20), receipt_id="rcpt-backup", request_id="del-backup",
                   **store_fields("backup"), method="LOGICAL", verification=None, rows_remaining=None,
                   beyond_use_until=_iso(day_start + timedelta(days=1)))
        if day == story.days - 2:
            record("deletion_request", day_start + timedelta(hours=12), request_id="del-bucket", scope="CATEGORY_IN_STORE",
                   **store_fields("bucket"), data_category="content.video", deadline=_iso(day_start + timedelta(days=1, hours=6)),
                   reason="migration: user media moved to OCI", requested_by="platform-migration")
            record("deletion_receipt", day_start + timedelta(hours=22), receipt_id="rcpt-bucket", request_id="del-bucket",
                   **store_fields("bucket"), method="PURGE", verification="ROW_COUNT", rows_remaining=120, verified_by="storage-team")
        if day == story.days - 1:
            record("deletion_request", day_start + timedelta(hours=6), request_id="del-mysql", scope="STORE", **store_fields("mysql"),
                   deadline=_iso(day_start + timedelta(hours=12)), reason="migration: legacy MySQL decommissioned",
                   requested_by="platform-migration")
            record("deletion_receipt", day_start + timedelta(hours=9), receipt_id="rcpt-mysql", request_id="del-mysql",
                   **store_fields("mysql"), method="CRYPTOGRAPHIC_ERASE", verification="RESCAN", rows_remaining=0, verified_by="dc-auditor")
            record("dataset_lifecycle", day_start + timedelta(hours=10), lifecycle_id="drop-mysql", **store_fields("mysql"),
                   lifecycle_state_change="DROP", producer="https://catalog.example/migration", actor_id="dba-7")
            # A forgotten job writes one subject's contact data to the dropped MySQL.
            app_event(day_start + timedelta(hours=15), app_server, "write", users[0], ["pii.contact"], STORES["mysql"][1], STORES["mysql"][2])
    events.sort(key=lambda e: e["event_time"])
    lifecycle.sort(key=lambda r: r[_TIME_FIELDS[r["record_type"]]])
    return ([_message(e["server_id"], e, e["event_time"]) for e in events],
            [_message(r["record_type"], r, r[_TIME_FIELDS[r["record_type"]]]) for r in lifecycle])


def _message(key: str, value: dict[str, Any], time: str) -> GeneratedMessage:
    moment = datetime.fromisoformat(time)
    return GeneratedMessage(key.encode(), orjson.dumps(value), int(moment.timestamp() * 1000), False)
