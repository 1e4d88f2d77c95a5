"""``flowaudit prove`` and ``flowaudit verify-proof``: an RFC 6962 inclusion
proof of one violation against its day's signed root, made from the
summaries folder and the violations, checked offline with the public key."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser", "add_verify_parser", "execute", "execute_verify"]


def add_parser(verbs: argparse._SubParsersAction) -> None:
    prove = verbs.add_parser("prove", help="an inclusion proof of one violation against its day's signed root", description=(
        "Print (or write with --out) the RFC 6962 audit path of one violation in its day's Merkle tree, with the "
        "violation and the day's signed digest: `flowaudit verify-proof` checks it with the public key alone."))
    prove.add_argument("--violation", required=True, metavar="ID", help="the violation_id")
    prove.add_argument("--day", required=True, metavar="YYYY-MM-DD", help="the day whose summary counts it")
    prove.add_argument("--summaries", required=True, metavar="DIR", help="folder of DATE.json and DATE.digest.json (or a backtest output folder)")
    prove.add_argument("--violations", required=True, metavar="FILE", help="violations JSONL (as backtest and the demo write it)")
    prove.add_argument("--out", help="write the proof here instead of printing it")
    prove.set_defaults(func=execute)


def add_verify_parser(verbs: argparse._SubParsersAction) -> None:
    check = verbs.add_parser("verify-proof", help="check an inclusion proof offline with the public key", description=(
        "Check a proof from `flowaudit prove`: the digest's Ed25519 signature under a trusted key, and that the "
        "violation's canonical content and the audit path lead to the signed root. Exit 0 if it holds, 1 naming why not."))
    check.add_argument("proof", help="the proof JSON")
    check.add_argument("--public-key", action="append", default=[], metavar="PEM", help="a trusted Ed25519 public key (repeatable)")
    check.add_argument("--keyring", metavar="DIR", help="a folder of trusted public keys (*.pem, *.pub)")
    check.set_defaults(func=execute_verify)


def execute(args: argparse.Namespace, beam_args: list[str]) -> int:
    import orjson

    from pipelines.cli.verify import violations_by_day
    from pipelines.trail.proofs import ProofError, inclusion_proof
    from pipelines.trail.verify import late_listed

    folder = Path(args.summaries)
    if (folder / "summaries").is_dir():
        folder = folder / "summaries"
    digest_path = folder / f"{args.day}.digest.json"
    if not digest_path.exists():
        print(f"flowaudit prove: {digest_path}: no signed digest of {args.day}", file=sys.stderr)
        return 2
    by_day = violations_by_day(Path(args.violations))
    if isinstance(by_day, str):
        print(f"flowaudit prove: {by_day}", file=sys.stderr)
        return 2
    listed = late_listed(folder)  # summary day -> the late violation ids it lists
    late_ids = listed.get(args.day, set())
    counted_later = set().union(*listed.values()) if listed else set()
    late = [v for day, violations in by_day.items() if day < args.day for v in violations if v["violation_id"] in late_ids]
    own = [v for v in by_day.get(args.day, []) if v["violation_id"] not in counted_later]
    try:
        proof = inclusion_proof(args.violation, args.day, own, digest_path.read_bytes(), late)
    except ProofError as exc:
        print(f"flowaudit prove: {exc}", file=sys.stderr)
        return 1
    data = orjson.dumps(proof, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    if args.out:
        Path(args.out).write_bytes(data)
        print(f"{args.out}: leaf {proof['leaf_index']} of {proof['tree_size']}, {len(proof['audit_path'])} hashes in its path")
    else:
        sys.stdout.write(data.decode())
    return 0


def execute_verify(args: argparse.Namespace, beam_args: list[str]) -> int:
    import orjson

    from pipelines.cli.verify import trusted_keys
    from pipelines.trail.proofs import check_proof

    keys = trusted_keys(args)
    if keys is None:
        print("flowaudit verify-proof: give --public-key or --keyring: a proof holds only against a key you trust", file=sys.stderr)
        return 2
    if isinstance(keys, str):
        print(f"flowaudit verify-proof: {keys}", file=sys.stderr)
        return 2
    try:
        proof = orjson.loads(Path(args.proof).read_bytes())
    except OSError as exc:
        print(f"flowaudit verify-proof: {args.proof}: {exc.strerror}", file=sys.stderr)
        return 2
    except orjson.JSONDecodeError as exc:
        print(f"flowaudit verify-proof: {args.proof}: not JSON ({exc})", file=sys.stderr)
        return 1
    why = check_proof(proof, keys)
    if why is not None:
        print(f"FAIL {args.proof}: {why}")
        return 1
    print(f"ok   violation {proof['violation']['violation_id']} is leaf {proof['leaf_index']} of {proof['tree_size']} in "
          f"{proof['date']}'s root {proof['digest']['merkle_root'][:16]}..., signed by key {proof['digest']['key_id'][:16]}...")
    return 0
