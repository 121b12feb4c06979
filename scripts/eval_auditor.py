"""How well the privacy auditor tells private node texts from general ones, on a labelled set written for clio_hf.

The set (`clio_hf/data/privacy_audit_set.jsonl`, 120 texts written by hand for clio_hf, none taken from a conversation)
holds 60 "private" node texts and 60 "general" ones; `kind` says which sort:
- private `identifier` (24): a name and summary that point at one person (names with addresses, emails, phone or account
  numbers, one patient's diagnosis);
- private `seeded` (30): an ordinary cluster name and summary with one person's details seeded into it;
- private `described` (6): one person or a tiny group pointed at without any name or number;
- general `topic` (45): topics that thousands of people share;
- general `mentions` (15): topics that mention emails, numbers, addresses, public figures or fictional people in
  general terms (the false positives a pattern or name finder is prone to).
Each of the two layers of the privacy gate is scored alone and together (a text is withheld when either flags it):
- `pii`: the deterministic finder (`clio_hf.pii`), flagging a text with any personal data in it;
- `llm`: the auditor's 1-5 rating (`clio_hf.privacy.audit_privacy`), flagging a text rated under the threshold.

    python scripts/eval_auditor.py [--llm qwen2.5-coder-0.5b smollm2-135m ...] [--threshold 3] [--json FILE]

It prints one table row per layer and model, then the share flagged per kind of text.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from pathlib import Path

import datasets

ROOT = Path(__file__).resolve().parents[1]
AUDIT_SET = ROOT / "clio_hf" / "data" / "privacy_audit_set.jsonl"
KINDS = ("identifier", "seeded", "described", "topic", "mentions")


def load_audit_set(path: Path = AUDIT_SET) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def score(flagged: list[bool], rows: list[dict]) -> dict:
    """Accuracy of "withheld iff private", private recall, general kept, and the share flagged per kind."""
    private = [r["label"] == "private" for r in rows]
    n_private, n_general = max(1, sum(private)), max(1, len(rows) - sum(private))
    return {
        "n": len(rows),
        "accuracy": sum(f == p for f, p in zip(flagged, private)) / max(1, len(rows)),
        "private_recall": sum(f and p for f, p in zip(flagged, private)) / n_private,
        "general_kept": sum(not f and not p for f, p in zip(flagged, private)) / n_general,
        "flagged_by_kind": {k: f"{sum(f for f, r in zip(flagged, rows) if r['kind'] == k)}/{sum(r['kind'] == k for r in rows)}"
                            for k in KINDS if any(r["kind"] == k for r in rows)},
    }


def _as_nodes(rows: list[dict]) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"name": [r["name"] for r in rows], "summary": [r["summary"] for r in rows]})


def pii_flags(rows: list[dict]) -> list[bool]:
    """The gate's own personal-data scan of each text, as `annotate` runs it on nodes."""
    from clio_hf.privacy import scan_personal_data

    return [bool(k) for k in scan_personal_data(_as_nodes(rows))["pii"]]


def llm_ratings(llm, rows: list[dict]) -> list[int | None]:
    from clio_hf.privacy import audit_privacy

    return audit_privacy(_as_nodes(rows), llm)["privacy_score"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--llm", nargs="*", default=["qwen2.5-coder-0.5b"], help="packaged specs or other LLM specs")
    parser.add_argument("--threshold", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write every flag and rating here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from clio_hf.llm import load_llm

    rows = load_audit_set()
    start = time.perf_counter()
    pii = pii_flags(rows)
    reports = [("pii", "-", score(pii, rows), time.perf_counter() - start, None)]
    for spec in args.llm:
        llm = load_llm(spec)
        start = time.perf_counter()
        ratings = llm_ratings(llm, rows)
        seconds = time.perf_counter() - start
        llm_flags = [r is None or r < args.threshold for r in ratings]
        histogram = {label: dict(sorted(Counter(s for s, r in zip(ratings, rows) if r["label"] == label).items(), key=str))
                     for label in ("private", "general")}
        reports.append(("llm", spec, score(llm_flags, rows), seconds, histogram))
        reports.append(("pii + llm", spec, score([a or b for a, b in zip(pii, llm_flags)], rows), seconds, None))
        del llm
    print("| layer | model | texts | private withheld | general kept | accuracy | flagged per kind (" + ", ".join(KINDS) + ") | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for layer, spec, report, seconds, _ in reports:
        print(f"| {layer} | {spec} | {report['n']} | {report['private_recall']:.2f} | {report['general_kept']:.2f} | "
              f"{report['accuracy']:.2f} | {' '.join(report['flagged_by_kind'].values())} | {seconds:.1f} |")
    for layer, spec, _, _, histogram in reports:
        if histogram:
            print(f"ratings by {spec}: private {histogram['private']}, general {histogram['general']}")
    if args.json:
        args.json.write_text(json.dumps([{"layer": l, "model": m, **r, "seconds": s, "ratings": h} for l, m, r, s, h in reports], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
