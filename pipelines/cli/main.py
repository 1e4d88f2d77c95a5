"""``flowaudit``: run the audit, replay files, watch violations, try the demo."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.errors import InputError, PipelineFailed
from pipelines.runtime.processes import StopRequested, children_answer_to_us, stop_on_signals

if TYPE_CHECKING:
    from pipelines.core.audit import RunSettings

__all__ = ["main"]

_log = logging.getLogger("flowaudit")
SEVERITY_ORDER = ("info", "low", "medium", "high", "critical")


def _quiet_beam_import_warnings(verbose: bool) -> None:
    # apache_beam warns, through the root logger, about optional GCP clients
    # that nothing here uses; the line only confuses a reader of our output.
    logging.getLogger().addFilter(lambda record: "apitools not found" not in record.getMessage())
    logging.getLogger("apache_beam.io.gcp.bigquery").setLevel(logging.WARNING)
    if not verbose:
        # "Really starting service ...", "Starting worker with command ...":
        # how Beam starts Prism and its workers, at WARNING; -v shows them.
        for name in ("apache_beam.utils.subprocess_server", "apache_beam.runners.worker.worker_pool_main"):
            logging.getLogger(name).setLevel(logging.ERROR)


def _add_policy_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", help="residency policy YAML (default: the shipped US residency policy)")
    parser.add_argument("--destinations", help="destination map YAML: internal ranges, host rules (default: shipped)")
    parser.add_argument("--ip-ranges", metavar="DIR", help="folder of the providers' IP range feeds, under the file names "
                        "the shipped copies have (README); default: the shipped copies")
    parser.add_argument("--expectations", help="Great Expectations suite JSON (default: the shipped app-event suite)")
    parser.add_argument("--no-expectations", action="store_true", help="residency rules only, no quality checks")
    parser.add_argument("--window-seconds", type=int, default=60, help="event-time window of window-level expectations (default 60)")
    parser.add_argument("--clock-skew", type=int, default=300, metavar="SECONDS",
                        help="how far ahead of processing time an event time may be (default 300)")
    parser.add_argument("--silent-gap-minutes", type=int, default=30,
                        help="a server with no event for this long is reported silent in the daily summary (default 30)")


def _add_kafka_args(parser: argparse.ArgumentParser) -> None:
    from pipelines.kafka.clients import CLIENTS, DEFAULT_CLIENT

    parser.add_argument("--bootstrap-servers", default=os.environ.get("FLOWAUDIT_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
                        help="Kafka bootstrap servers, host:port[,host:port] (env FLOWAUDIT_BOOTSTRAP_SERVERS)")
    parser.add_argument("--kafka-client", choices=CLIENTS, default=os.environ.get("FLOWAUDIT_KAFKA_CLIENT", DEFAULT_CLIENT),
                        help=f"library that reads events and writes outputs (default {DEFAULT_CLIENT}; env FLOWAUDIT_KAFKA_CLIENT)")
    _add_kafka_security_args(parser)


def _add_kafka_security_args(parser: argparse.ArgumentParser) -> None:
    from pipelines.kafka.security import KEY_PASSWORD_ENV, PASSWORD_ENV, PROTOCOLS, SASL_MECHANISMS

    env = os.environ.get
    group = parser.add_argument_group(
        "Kafka security", f"TLS and SASL. Passwords only from a file or the environment ({PASSWORD_ENV}, {KEY_PASSWORD_ENV}), "
                          "never on the command line; every option also reads FLOWAUDIT_KAFKA_<OPTION>.")
    group.add_argument("--security-protocol", type=str.upper, choices=PROTOCOLS, default=env("FLOWAUDIT_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
                       help="PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL")
    group.add_argument("--sasl-mechanism", type=str.upper, choices=SASL_MECHANISMS, default=env("FLOWAUDIT_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
                       help="SASL mechanism (default SCRAM-SHA-512)")
    group.add_argument("--sasl-username", default=env("FLOWAUDIT_KAFKA_SASL_USERNAME"), help="SASL user")
    group.add_argument("--sasl-password-file", default=env("FLOWAUDIT_KAFKA_SASL_PASSWORD_FILE"), metavar="FILE",
                       help=f"file holding the SASL password (else {PASSWORD_ENV})")
    group.add_argument("--ssl-cafile", default=env("FLOWAUDIT_KAFKA_SSL_CAFILE"), metavar="PEM",
                       help="CA certificate(s) to trust the brokers by (default: the system store)")
    group.add_argument("--ssl-certfile", default=env("FLOWAUDIT_KAFKA_SSL_CERTFILE"), metavar="PEM", help="client certificate, for mutual TLS")
    group.add_argument("--ssl-keyfile", default=env("FLOWAUDIT_KAFKA_SSL_KEYFILE"), metavar="PEM", help="the client certificate's private key")
    group.add_argument("--ssl-key-password-file", default=env("FLOWAUDIT_KAFKA_SSL_KEY_PASSWORD_FILE"), metavar="FILE",
                       help=f"file holding the private key's password (else {KEY_PASSWORD_ENV})")
    group.add_argument("--ssl-no-hostname-check", action="store_true", default=bool(env("FLOWAUDIT_KAFKA_SSL_NO_HOSTNAME_CHECK")),
                       help="accept a broker certificate that does not name the host connected to")


def _security(args: argparse.Namespace):
    from pipelines.kafka.security import security_from_options

    return security_from_options(args.security_protocol, args.sasl_mechanism, args.sasl_username, args.sasl_password_file,
                                 args.ssl_cafile, args.ssl_certfile, args.ssl_keyfile, args.ssl_key_password_file,
                                 ssl_check_hostname=not args.ssl_no_hostname_check)


def _security_for_given_cluster(args: argparse.Namespace):
    """bench and demo start a local plaintext broker unless --bootstrap-servers names one."""
    security = _security(args)
    if security.protocol != "PLAINTEXT" and not args.bootstrap_servers:
        raise InputError(f"--security-protocol {security.protocol} is for a cluster given with --bootstrap-servers; "
                         "the local broker started without it listens in PLAINTEXT")
    return security


def _kafka(args: argparse.Namespace, client_id: str = "flowaudit"):
    """The cluster the command talks to, reached and authenticated once (a
    wrong password or certificate is named here, not left to time out)."""
    from pipelines.kafka.admin import KafkaConfig

    config = KafkaConfig(args.bootstrap_servers, client_id=client_id, client=args.kafka_client, security=_security(args))
    config.check_connection()
    _log.info("Kafka at %s: %s", config.bootstrap_servers, config.security.describe())
    return config


def _settings(args: argparse.Namespace, *, allow_random_key: bool) -> RunSettings:
    from pipelines.audits.residency.audit import ResidencyAudit
    from pipelines.audits.residency.events import DecoderConfig, event_columns
    from pipelines.audits.residency.policy import load_policy
    from pipelines.audits.residency.tagging import load_destination_map
    from pipelines.core.audit import QualitySettings, RunSettings
    from pipelines.core.pseudonym import key_from_environment
    from pipelines.core.quality.suites import load_suite

    if args.window_seconds < 1 or args.clock_skew < 0:
        raise InputError("--window-seconds must be at least 1 and --clock-skew at least 0")
    lateness = getattr(args, "allowed_lateness", 3600)
    quality = None
    if not args.no_expectations:
        quality = QualitySettings(load_suite(args.expectations, columns=event_columns()), args.window_seconds, args.clock_skew,
                                  allowed_lateness_seconds=lateness)
    destinations = load_destination_map(args.destinations)
    ip_ranges = None
    if args.ip_ranges:
        from pipelines.audits.residency.ipranges import feed_entries

        if not Path(args.ip_ranges).is_dir():
            raise InputError(f"{args.ip_ranges} (--ip-ranges): no such folder")
        ip_ranges = str(Path(args.ip_ranges).resolve())
        feed_entries(ip_ranges, check_prefixes=True)  # every file and prefix checked here, not again on each worker
    policy = load_policy(args.policy, extra_regions=[region for _, _, region, _ in destinations.internal])
    schema_ids = getattr(args, "schema_id", None)
    decoder = DecoderConfig(confluent_schema_ids=frozenset(schema_ids) if schema_ids else None,
                            bare_avro=getattr(args, "bare_avro", False))
    residency = ResidencyAudit(policy=policy, destinations=destinations, quality=quality, decoder=decoder, ip_ranges=ip_ranges,
                               silent_gap_minutes=args.silent_gap_minutes)
    return RunSettings(audits=(residency,), pseudonym_key=key_from_environment(allow_random=allow_random_key),
                       allowed_lateness_seconds=lateness)


def _counters(result: Any) -> dict[str, int]:
    from apache_beam.metrics.metric import MetricsFilter

    counts: dict[str, int] = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace("flowaudit"))["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        counts[counter.key.metric.name] = counts.get(counter.key.metric.name, 0) + (value or 0)
    for distribution in result.metrics().query(MetricsFilter().with_namespace("flowaudit"))["distributions"]:
        value = distribution.committed if distribution.committed is not None else distribution.attempted
        if value is not None and value.count:
            name = f"{distribution.key.metric.name}_max"
            counts[name] = max(counts.get(name, 0), value.max)
    return counts


def _unreadable_avro(path: Path) -> str | None:
    """Why an Avro container file cannot be read, or None. A corrupt block
    loses every record after it, so the replay is refused up front."""
    from fastavro import reader

    records = -1
    try:
        with open(path, "rb") as fh:
            avro = reader(fh)
            records = 0
            for _ in avro:
                records += 1
    except Exception as exc:  # fastavro raises many types on corrupt files  # noqa: BLE001
        at = "in its header" if records < 0 else f"after record {records}"
        return f"{path}: not a readable Avro container file ({at}): {type(exc).__name__}: {exc}"
    return None


def cmd_backtest(args: argparse.Namespace, beam_args: list[str]) -> int:
    import apache_beam as beam
    import orjson
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from pipelines.pipeline import build_file_audit
    from pipelines.trail.folder import summary_days

    events = Path(args.events)
    if not events.is_file():
        print(f"flowaudit backtest: {events}: no such file", file=sys.stderr)
        return 2
    from pipelines.files import TOPIC_DUMP_SUFFIX, check_topic_dump

    if events.suffix == ".avro" or events.name.endswith(TOPIC_DUMP_SUFFIX):
        problem = _unreadable_avro(events) if events.suffix == ".avro" else check_topic_dump(str(events))
        if problem:
            print(f"flowaudit backtest: {problem}", file=sys.stderr)
            return 2
    settings = _settings(args, allow_random_key=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # The in-process engine: a file replay is bounded and needs no binary.
    pipeline = beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions(beam_args))
    build_file_audit(pipeline, [(settings.audits[0], str(events.resolve()))], str(out.resolve()), settings,
                     earlier_summaries=summary_days(out / "summaries"))
    result = pipeline.run()
    result.wait_until_finish()
    counts = _counters(result)
    summary = {name: counts.get(name, 0) for name in ("in", "parsed", "dead_letters", "violations", "dead_letters_undated")}
    (out / "counts.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
    print(orjson.dumps(summary).decode())
    if summary["in"] != summary["parsed"] + summary["dead_letters"]:
        print("flowaudit backtest: counts do not balance (in != parsed + dead_letters)", file=sys.stderr)
        return 1
    return 0


def _check_run_options(args: argparse.Namespace) -> None:
    problems = [f"{option} must be {rule}, not {value}" for option, value, ok, rule in (
        ("--sdk-workers", args.sdk_workers, args.sdk_workers is None or args.sdk_workers >= 1, "at least 1"),
        ("--max-records", args.max_records, args.max_records is None or args.max_records >= 1, "at least 1"),
        ("--watermark-lag", args.watermark_lag, args.watermark_lag >= 0, "0 or more seconds"),
        ("--idle-after", args.idle_after, args.idle_after >= 0, "0 or more seconds"),
        ("--allowed-lateness", args.allowed_lateness, args.allowed_lateness >= 0, "0 or more seconds"),
        ("--silent-gap-minutes", args.silent_gap_minutes, args.silent_gap_minutes >= 1, "at least 1"),
    ) if not ok]
    if problems:
        raise InputError("refused options: " + "; ".join(problems))


def cmd_run(args: argparse.Namespace, beam_args: list[str]) -> int:
    import apache_beam as beam
    import orjson

    from pipelines.kafka.admin import plan_partitions, require_topics
    from pipelines.kafka.publish import OutputTopics
    from pipelines.pipeline import build_kafka_audit
    from pipelines.runtime.runners import is_single_process, local_worker_processes, pipeline_options, use_worker_processes
    from pipelines.runtime.stopping import CommittedOffsets, run_counts, stop_run, wait_for
    from pipelines.trail.folder import summary_days

    _check_run_options(args)
    settings = _settings(args, allow_random_key=False)
    kafka = _kafka(args)
    bounded = args.bounded or args.max_records is not None
    partitions = plan_partitions(kafka, args.events_topic, args.group, start=args.start,
                                 bounded=bounded, max_records=args.max_records)
    require_topics(kafka, {"--violations-topic": args.violations_topic, "--dead-letters-topic": args.dead_letters_topic,
                           "--summary-topic": args.summary_topic})
    options = pipeline_options(beam_args, streaming=not bounded)
    workers = local_worker_processes(options, args.sdk_workers, len(partitions))
    if workers > 1:
        options = use_worker_processes(options)
    pipeline = beam.Pipeline(options=options)
    import tempfile

    from pipelines.kafka.reader import ReaderSettings

    # Workers on this machine (Prism's) can be told to stop reading before
    # the job is cancelled; remote ones are cancelled as they are.
    drain = Path(tempfile.mkdtemp(prefix="flowaudit-run-")) / "drain" if is_single_process(options) else None
    build_kafka_audit(pipeline, kafka, [(settings.audits[0], partitions)], OutputTopics(args.violations_topic, args.dead_letters_topic),
                      args.group, settings, reader=ReaderSettings(max_out_of_orderness_seconds=args.watermark_lag,
                                                                   idle_after_seconds=args.idle_after,
                                                                   single_process=is_single_process(options),
                                                                   drain_marker=str(drain) if drain else None),
                      summary_topic=args.summary_topic, summaries_dir=args.summaries_dir,
                      earlier_summaries=summary_days(args.summaries_dir),
                      worker_processes=workers)
    _log.info("auditing %d partitions of %s (%s, %d worker process%s)", len(partitions), ", ".join(args.events_topic),
              "bounded" if bounded else "streaming", workers, "" if workers == 1 else "es")
    result = pipeline.run()
    # Beam's local job server sets a SIGINT handler of its own as it starts,
    # one that stops Prism before anything else: ours goes back on top.
    try:
        with stop_on_signals():
            try:
                wait_for(result)
            except StopRequested as stop:
                return stop_run(result, stop, CommittedOffsets(kafka, args.group, args.events_topic), drain, lambda: _counters(result))
        print(orjson.dumps(run_counts(_counters(result))).decode())
        return 0
    finally:
        if drain is not None:
            drain.unlink(missing_ok=True)
            drain.parent.rmdir()


def cmd_violations_tail(args: argparse.Namespace, beam_args: list[str]) -> int:
    import orjson
    from kafka import TopicPartition

    from pipelines.core.violations import decode_single_object, describe_violation

    kafka = _kafka(args, "flowaudit-tail")
    consumer = kafka.consumer(auto_offset_reset="earliest" if args.from_beginning else "latest")
    partitions = consumer.partitions_for_topic(args.topic)
    if not partitions:
        print(f"flowaudit violations tail: topic {args.topic!r} not found on {args.bootstrap_servers}", file=sys.stderr)
        return 2
    tps = [TopicPartition(args.topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    if args.from_beginning:
        consumer.seek_to_beginning(*tps)
    else:
        consumer.seek_to_end(*tps)
    floor = SEVERITY_ORDER.index(args.severity) if args.severity else 0
    shown = 0
    last_record = time.monotonic()
    try:
        while args.max is None or shown < args.max:
            polled = consumer.poll(timeout_ms=500)
            if polled:
                last_record = time.monotonic()
            elif args.exit_when_idle and time.monotonic() - last_record > 2:
                break
            for records in polled.values():
                for record in records:
                    try:
                        violation = decode_single_object(record.value, "violation")
                    except (ValueError, EOFError) as exc:
                        print(f"# {args.topic}[{record.partition}]@{record.offset}: {exc}", file=sys.stderr)
                        continue
                    if SEVERITY_ORDER.index(violation["severity"]) < floor:
                        continue
                    if args.rule and violation["rule_id"] not in args.rule:
                        continue
                    if args.json:
                        violation["event_time_ms"] = int(violation["event_time_ms"].timestamp() * 1000)
                        print(orjson.dumps(violation, default=str).decode(), flush=True)
                    else:
                        print(describe_violation(violation), flush=True)
                    shown += 1
                    if args.max is not None and shown >= args.max:
                        return 0
    finally:
        consumer.close()
    return 0


def cmd_expectations_check(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines.audits.residency.events import event_columns
    from pipelines.core.quality.suites import load_suite

    suite = load_suite(args.file, columns=event_columns())
    print(f"{args.file}: suite {suite.name!r} is valid: {len(suite.expectations)} expectations, "
          f"{len(suite.per_record)} per record, {len(suite.windowed)} per window"
          + (f"; parameters: {', '.join(sorted(suite.parameters))}" if suite.parameters else ""))
    for expectation in suite.expectations:
        scope = "record" if expectation.per_record else "window"
        print(f"  {scope:6} {expectation.severity:8} {expectation.rule_id}")
    return 0


def cmd_summarize(args: argparse.Namespace, beam_args: list[str]) -> int:
    from datetime import UTC, datetime, timedelta

    import apache_beam as beam

    from pipelines.kafka.admin import plan_time_range
    from pipelines.pipeline import build_day_summary
    from pipelines.runtime.runners import pipeline_options
    from pipelines.trail.folder import summary_days

    try:
        day = datetime.strptime(args.date, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        print(f"flowaudit summarize: --date {args.date!r} is not YYYY-MM-DD", file=sys.stderr)
        return 2
    settings = _settings(args, allow_random_key=True)
    kafka = _kafka(args)
    start_ms = int(day.timestamp() * 1000)
    stop_ms = int((day + timedelta(days=1)).timestamp() * 1000) + args.allowed_lateness * 1000
    partitions = plan_time_range(kafka, args.events_topic, start_ms, stop_ms)
    if sum(p.stop_offset - p.start_offset for p in partitions) == 0:
        print(f"flowaudit summarize: no messages of {args.date} on {', '.join(args.events_topic)}", file=sys.stderr)
        return 1
    pipeline = beam.Pipeline(options=pipeline_options(beam_args, streaming=False))
    build_day_summary(pipeline, kafka, [(settings.audits[0], partitions)], args.date, args.summaries_dir, settings,
                      earlier_summaries=summary_days(args.summaries_dir))
    pipeline.run().wait_until_finish()
    written = Path(args.summaries_dir) / f"{args.date}.json"
    if not written.exists():
        print(f"flowaudit summarize: no events of {args.date} were found", file=sys.stderr)
        return 1
    print(f"{written} ({sum(p.stop_offset - p.start_offset for p in partitions)} messages read)")
    return 0


def cmd_export(args: argparse.Namespace, beam_args: list[str]) -> int:
    from kafka import TopicPartition

    from pipelines.files import TOPIC_DUMP_SUFFIX, dump_line

    if not args.out.endswith(TOPIC_DUMP_SUFFIX):
        print(f"flowaudit export: the output file must end in {TOPIC_DUMP_SUFFIX} (backtest recognises dumps by it)", file=sys.stderr)
        return 2
    consumer = _kafka(args, "flowaudit-export").consumer()
    partitions = consumer.partitions_for_topic(args.topic)
    if not partitions:
        print(f"flowaudit export: topic {args.topic!r} not found on {args.bootstrap_servers}", file=sys.stderr)
        return 2
    written = 0
    with open(args.out, "wb") as out:
        for partition in sorted(partitions):
            tp = TopicPartition(args.topic, partition)
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            end = consumer.end_offsets([tp])[tp]
            while consumer.position(tp) < end:
                for record in consumer.poll(timeout_ms=1000).get(tp, []):
                    if record.offset >= end:
                        break
                    out.write(dump_line(args.topic, partition, record.offset, record.timestamp, record.key, record.value) + b"\n")
                    written += 1
    consumer.close()
    print(f"{written} messages of {args.topic} written to {args.out}")
    return 0


def cmd_verify(args: argparse.Namespace, beam_args: list[str]) -> int:
    import orjson

    from pipelines.core.days import day_of
    from pipelines.core.violations import standing
    from pipelines.trail.verify import verify_directory

    folder = Path(args.dir)
    if (folder / "summaries").is_dir():
        folder = folder / "summaries"
    if not folder.is_dir():
        print(f"flowaudit verify: {args.dir}: no such folder", file=sys.stderr)
        return 2
    ids: dict[str, list[str]] | None = None
    if args.violations:
        by_day: dict[str, list[dict]] = {}
        for number, line in enumerate(Path(args.violations).read_bytes().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                violation = orjson.loads(line)
                by_day.setdefault(day_of(violation["event_time_ms"]), []).append(violation)
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                print(f"flowaudit verify: {args.violations} line {number}: not a violation record ({exc})", file=sys.stderr)
                return 2
        # Per day, as the summaries count them (one id can be in two days: two events that share an
        # event id); of a window verdict revised by late events, the newest revision stands.
        ids = {day: list(standing(violations)) for day, violations in by_day.items()}
    days, problems = verify_directory(folder, ids)
    for problem in problems:
        print(f"FAIL {problem}")
    bad = {p.day for p in problems}
    for day in days:
        if day not in bad:
            print(f"ok   {day}")
    if not days:
        print(f"flowaudit verify: no DATE.json summaries in {folder}", file=sys.stderr)
        return 2
    print(f"{len(days) - len(bad & set(days))} of {len(days)} days verified" + ("" if not problems else f"; {len(problems)} problems"))
    return 1 if problems else 0


def cmd_bench(args: argparse.Namespace, beam_args: list[str]) -> int:
    if args.quality:
        from pipelines.devtools.bench.validator_speed import main_quality

        return main_quality(args.records, args.expectations, args.skip_gx)
    from pipelines.devtools.bench.pipeline_throughput import EventsBench, main_events

    if args.events < 1 or args.partitions < 1 or args.rate <= 0:
        raise InputError("--events, --partitions and --rate must be positive")
    return main_events(EventsBench(events=args.events, partitions=args.partitions, seed=args.seed,
                                   bootstrap_servers=args.bootstrap_servers, security=_security_for_given_cluster(args), latency=args.latency, rate=args.rate,
                                   latency_seconds=args.latency_seconds, beam_args=tuple(beam_args),
                                   clients=tuple(args.kafka_client or ())))


def cmd_demo(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines.devtools.demo import run_demo

    if not args.verbose:  # the demo's own clients: their warnings (slow event loop, retries) are not the auditor's business
        logging.getLogger("kafka").setLevel(logging.ERROR)
    if args.duration <= 0 or args.rate <= 0 or args.past_days < 0 or args.past_events_per_day < 1:
        raise InputError("refused options: --duration and --rate must be positive, --past-days 0 or more, "
                         "--past-events-per-day at least 1")
    return run_demo(duration=args.duration, rate=args.rate, beam_args=beam_args, quiet=args.quiet,
                    bootstrap_servers=args.bootstrap_servers, security=_security_for_given_cluster(args),
                    history_days=args.past_days, events_per_history_day=args.past_events_per_day, out=args.out)


def cmd_generate(args: argparse.Namespace, beam_args: list[str]) -> int:
    from datetime import UTC, datetime, timedelta

    from pipelines.devtools.generator import write_sample

    if args.events < 1 or args.days < 1:
        raise InputError(f"--events and --days must be at least 1 (got {args.events} and {args.days})")
    end = None
    if args.first_day:
        try:
            end = datetime.strptime(args.first_day, "%Y-%m-%d").replace(tzinfo=UTC) + timedelta(days=args.days)
        except ValueError:
            raise InputError(f"--first-day {args.first_day!r} is not YYYY-MM-DD") from None
    out = Path(args.out)
    if out.parent and not out.parent.is_dir():
        raise InputError(f"{out.parent} (--out): no such folder")
    counts = write_sample(str(out), args.events, args.days, seed=args.seed, end=end)
    left_out = f"; {counts['left_out']} malformed messages left out (an Avro container holds only records)" if counts["left_out"] else ""
    print(f"{out}: {counts['messages']} messages ({counts['malformed']} malformed) of {args.days} UTC "
          f"day{'s' if args.days > 1 else ''}, {counts['first_day']} to {counts['last_day']}{left_out}")
    print(f"next: flowaudit backtest --events {out} --out out/sample  (then open out/sample/summaries/{counts['last_day']}.html, "
          "and flowaudit verify out/sample --violations out/sample/violations.jsonl)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from pipelines.kafka.clients import CLIENTS, DEFAULT_CLIENT

    parser = argparse.ArgumentParser(prog="flowaudit", description="Continuous data-residency audit of Kafka event streams (Apache Beam).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    run = verbs.add_parser("run", help="stream-audit Kafka topics; unknown options go to Beam (--runner, ...)",
                           description="Read app events from Kafka, tag and check them, write violations and dead letters "
                                       "to their topics and commit offsets after the broker acknowledged them. Options "
                                       "not listed here are Beam pipeline options (e.g. --runner=FlinkRunner). "
                                       "Needs FLOWAUDIT_PSEUDONYM_KEY or FLOWAUDIT_PSEUDONYM_KEY_FILE.")
    _add_kafka_args(run)
    run.add_argument("--events-topic", action="append", default=None, help="topic of app events (repeatable; default app-events)")
    run.add_argument("--violations-topic", default="flowaudit.violations")
    run.add_argument("--dead-letters-topic", default="flowaudit.dead-letters")
    run.add_argument("--group", default="flowaudit", help="consumer group whose offsets are committed")
    run.add_argument("--start", choices=["earliest", "latest"], default="earliest",
                     help="where to begin when the group has no committed offset")
    run.add_argument("--bounded", action="store_true", help="stop at the end offsets seen at start (backfills, tests)")
    run.add_argument("--max-records", type=int, help="stop after this many records in all (implies --bounded)")
    run.add_argument("--watermark-lag", type=float, default=30.0, metavar="SECONDS",
                     help="how far each partition's watermark trails the newest event time it has read: events "
                          "up to this far out of order are judged with their windows (default 30)")
    run.add_argument("--idle-after", type=float, default=10.0, metavar="SECONDS",
                     help="a caught-up partition with no record for this long is idle: its watermark then "
                          "follows the wall clock, so windows and days close when traffic stops (default 10)")
    run.add_argument("--summary-topic", help="topic for the daily summaries (Avro, key = date); off unless given")
    run.add_argument("--summaries-dir", help="also write summaries/DATE.json and DATE.html here; the newest file seeds the chain")
    run.add_argument("--allowed-lateness", type=int, default=3600, metavar="SECONDS",
                     help="how long after a day ends its summary waits for late events, and how long "
                          "stragglers of a judged quality window are still counted as late (default 3600)")
    run.add_argument("--sdk-workers", type=int, metavar="N",
                     help="on DirectRunner (Prism): audit in N SDK worker processes, each over its share of the "
                          "partitions (default: one per core, at most one per partition; 1 keeps everything in this process)")
    run.add_argument("--schema-id", type=int, action="append", help="Confluent schema id(s) of app events (default: any)")
    run.add_argument("--bare-avro", action="store_true", help="messages are schemaless Avro with no header")
    _add_policy_args(run)
    run.set_defaults(func=cmd_run)

    backtest = verbs.add_parser("backtest", help="audit a JSONL or Avro file, no broker needed",
                                description="Run the same audit steps over a file of app events (JSON Lines, an Avro "
                                            "container file ending in .avro, or a topic dump from `flowaudit export` "
                                            "ending in .kafka.jsonl) and write violations.jsonl, "
                                            "dead_letters.jsonl and counts.json to the output directory.")
    backtest.add_argument("--events", required=True, help="JSONL or .avro file of app events")
    backtest.add_argument("--out", required=True, help="output directory")
    _add_policy_args(backtest)
    backtest.set_defaults(func=cmd_backtest)

    violations = verbs.add_parser("violations", help="work with the violations topic")
    vverbs = violations.add_subparsers(dest="violations_verb", required=True, metavar="VERB")
    tail = vverbs.add_parser("tail", help="print violations as they arrive",
                             description="Subscribe to the violations topic and print each violation readably.")
    _add_kafka_args(tail)
    tail.add_argument("--topic", default="flowaudit.violations")
    tail.add_argument("--severity", choices=SEVERITY_ORDER, help="show only this severity and above")
    tail.add_argument("--rule", action="append", help="show only this rule id (repeatable)")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest violation, not now")
    tail.add_argument("--json", action="store_true", help="one JSON object per line")
    tail.add_argument("--max", type=int, help="stop after printing this many")
    tail.add_argument("--exit-when-idle", action="store_true", help="stop when nothing new arrives for 2 s")
    tail.set_defaults(func=cmd_violations_tail)

    expectations = verbs.add_parser("expectations", help="work with Great Expectations suites")
    everbs = expectations.add_subparsers(dest="expectations_verb", required=True, metavar="VERB")
    check = everbs.add_parser("check", help="validate a suite file", description=(
        "Check that a GX suite (ExpectationSuite.to_json_dict() JSON) is one the audit can evaluate; "
        "exit 0 if so, else 2 with every problem named by file, line and expectation."))
    check.add_argument("file", help="suite JSON file")
    check.set_defaults(func=cmd_expectations_check)

    summarize = verbs.add_parser("summarize", help="one day's summary, read back from the topics", description=(
        "Read the messages of one UTC day back from the events topic (offsets by time, up to the allowed "
        "lateness after the day), audit them again and write DATE.json / DATE.html into --summaries-dir, "
        "chained to the newest earlier summary there. Unknown options go to Beam."))
    _add_kafka_args(summarize)
    summarize.add_argument("--date", required=True, help="YYYY-MM-DD (UTC)")
    summarize.add_argument("--events-topic", action="append", default=None, help="topic of app events (repeatable; default app-events)")
    summarize.add_argument("--summaries-dir", required=True, help="folder of summaries: the previous day is read from it, the day written to it")
    summarize.add_argument("--allowed-lateness", type=int, default=3600, metavar="SECONDS")
    _add_policy_args(summarize)
    summarize.set_defaults(func=cmd_summarize)

    export = verbs.add_parser("export", help="dump a topic to a file that backtest replays exactly", description=(
        "Write every message of a topic, with its partition, offset, timestamp and key, to FILE.kafka.jsonl; "
        "`flowaudit backtest --events FILE.kafka.jsonl` then replays the topic exactly as the stream saw it."))
    _add_kafka_args(export)
    export.add_argument("--topic", required=True)
    export.add_argument("--out", required=True, help="output file, ending in .kafka.jsonl")
    export.set_defaults(func=cmd_export)

    verify = verbs.add_parser("verify", help="check a folder of daily summaries for tampering", description=(
        "Recompute each daily summary's digest and the chain of previous-day hashes; with --violations, also "
        "each day's Merkle root over its violation ids. Exit 0 when all holds, 1 naming each edited, missing "
        "or reordered day."))
    verify.add_argument("dir", help="folder of DATE.json summaries (or a backtest output folder)")
    verify.add_argument("--violations", help="violations JSONL (as backtest writes it) to check the Merkle roots against")
    verify.set_defaults(func=cmd_verify)

    bench = verbs.add_parser("bench", help="measure throughput (figures, not pass/fail)", description=(
        "Measure throughput and print figures; the last line is one JSON object. By default: N events loaded once "
        "into a topic of the bench broker, the kafka-python consume+decode floor, then the audit pipeline end to end "
        "on DirectRunner; unknown options go to Beam."))
    bench.add_argument("--events", type=int, default=1_000_000, help="events in the topic (default 1000000)")
    bench.add_argument("--partitions", type=int, default=6, help="partitions of the events topic (default 6)")
    bench.add_argument("--seed", type=int, default=1, help="generator seed (a new seed loads a new topic)")
    bench.add_argument("--bootstrap-servers", help="a running Kafka to use instead of the bench broker (.cache/bench-kafka)")
    _add_kafka_security_args(bench)
    bench.add_argument("--kafka-client", action="append", choices=CLIENTS,
                       help="run the pipeline with this client (repeatable; default: each installed one, "
                            f"{DEFAULT_CLIENT} first); the first one's figures lead")
    bench.add_argument("--latency", action="store_true", help="also p50/p99 event-to-violation latency at --rate")
    bench.add_argument("--rate", type=float, default=5000.0, help="offered events/s of the latency run (default 5000)")
    bench.add_argument("--latency-seconds", type=float, default=30.0, help="how long the latency run offers events (default 30)")
    bench.add_argument("--quality", action="store_true",
                       help="the quality validator against Great Expectations on the same records and suite")
    bench.add_argument("--records", type=int, default=200_000, help="records to generate (default 200000)")
    bench.add_argument("--expectations", help="suite JSON (default: the shipped suite)")
    bench.add_argument("--skip-gx", action="store_true", help="measure only the project's validator")
    bench.set_defaults(func=cmd_bench)

    generate = verbs.add_parser("generate", help="write sample app events to a file (no broker needed)", description=(
        "Write the demo's traffic mix (US and other users, off-policy flows, quality faults, 2%% malformed messages) "
        "spread evenly over whole UTC days, for `flowaudit backtest`. FILE ending in .kafka.jsonl: a topic dump, "
        "every message byte for byte (Avro ones included) with partition, offset and timestamp; .avro: an Avro "
        "container file of the schema-valid events; anything else: JSON Lines."))
    generate.add_argument("--events", type=int, default=20_000, help="how many messages (default 20000)")
    generate.add_argument("--days", type=int, default=2, help="over how many UTC days (default 2)")
    generate.add_argument("--first-day", metavar="YYYY-MM-DD", help="the first day (default: DAYS days before today, UTC)")
    generate.add_argument("--seed", type=int, default=7, help="the same seed gives the same messages (default 7)")
    generate.add_argument("--out", required=True, metavar="FILE", help="output file (.jsonl, .avro or .kafka.jsonl)")
    generate.set_defaults(func=cmd_generate)

    demo = verbs.add_parser("demo", help="local broker + generated traffic + live audit on DirectRunner",
                            description="Start the local Kafka, replay a few past days of realistic app-server traffic, "
                                        "then produce live traffic; audit it on DirectRunner (Prism), show violations as "
                                        "they arrive and each past day's summary as it closes, then verify the summaries "
                                        "and account for every event.")
    demo.add_argument("--duration", type=float, default=60.0, help="seconds of live traffic (default 60)")
    demo.add_argument("--rate", type=float, default=200.0, help="live events per second (default 200)")
    demo.add_argument("--past-days", type=int, default=3,
                      help="whole UTC days before today replayed at full speed first, so that days close and their "
                           "summaries are written during the demo (default 3)")
    demo.add_argument("--past-events-per-day", type=int, default=10_000, help="events of each past day (default 10000)")
    demo.add_argument("--out", metavar="DIR", help="where summaries, violation ids and the pipeline log go (default out/demo-<time>)")
    demo.add_argument("--quiet", action="store_true", help="progress and totals only, no violation lines")
    demo.add_argument("--bootstrap-servers", help="use this running Kafka instead of starting the local one")
    _add_kafka_security_args(demo)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line; whatever a user can do ends in one line on stderr
    and an exit status, never a traceback (``-v`` adds one for a bug)."""
    verbose = "-v" in (argv if argv is not None else sys.argv[1:]) or "--verbose" in (argv if argv is not None else sys.argv[1:])
    with stop_on_signals(), children_answer_to_us():
        try:
            return _main(argv)
        except StopRequested as stop:
            return _interrupted(stop.name, stop.exit_status)
        except KeyboardInterrupt:
            return _interrupted("SIGINT", 130)
        except BrokenPipeError:
            # `flowaudit violations tail | head`: the reader left; nothing to say.
            sys.stderr.close()
            return 141
        except Exception as exc:  # noqa: BLE001
            if verbose:
                _log.exception("unexpected error")
            print(f"flowaudit: unexpected error (a bug; -v shows where): {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1


def _interrupted(name: str, status: int) -> int:
    """Whatever the command started (Prism, workers, a `run` of bench's) is stopped with it."""
    from pipelines.runtime.processes import stop_descendants

    print(f"flowaudit: interrupted ({name}); stopping", file=sys.stderr, flush=True)
    with stop_on_signals():
        stop_descendants(timeout=5.0)
    return status


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    if beam_args and args.func not in (cmd_run, cmd_demo, cmd_backtest, cmd_summarize, cmd_bench):
        parser.error(f"unrecognized arguments: {' '.join(beam_args)}")
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # kafka-python's DEBUG lines hold its whole configuration (the SASL
    # password with it) and raw record bytes (personal data): never shown,
    # even where something else turns the root logger to DEBUG.
    logging.getLogger("kafka").setLevel(level)
    _quiet_beam_import_warnings(args.verbose)
    if getattr(args, "events_topic", "unset") is None:
        args.events_topic = ["app-events"]
    from kafka.errors import KafkaError

    from pipelines.core.configfile import ConfigError
    from pipelines.core.pseudonym import MissingKeyError
    from pipelines.devtools.localkafka import BrokerError
    from pipelines.kafka.security import KafkaConnectError
    from pipelines.runtime.runners import RunnerSetupError

    verb = " ".join(v for v in (args.verb, getattr(args, "violations_verb", None), getattr(args, "expectations_verb", None)) if v)
    try:
        return args.func(args, beam_args)
    except ConfigError as exc:
        print(f"flowaudit {verb}: refused configuration:\n{exc}", file=sys.stderr)
        return 2
    except KafkaError as exc:
        where = getattr(args, "bootstrap_servers", "")
        print(f"flowaudit {verb}: Kafka at {where}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 3
    except KafkaConnectError as exc:
        print(f"flowaudit {verb}: {exc}", file=sys.stderr)
        return 3
    except (MissingKeyError, RunnerSetupError, InputError) as exc:
        print(f"flowaudit {verb}: {exc}", file=sys.stderr)
        return 2
    except BrokerError as exc:
        print(f"flowaudit {verb}: local Kafka: {exc}", file=sys.stderr)
        return 3
    except PipelineFailed as exc:
        print(f"flowaudit {verb}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"flowaudit {verb}: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
