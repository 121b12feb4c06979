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
A text counts as flagged when the auditor rates it under the threshold (default 3), i.e. when the node would be withheld.

    python scripts/eval_auditor.py [--llm smollm2-135m] [--threshold 3]

It prints a table and ends with `auditor accuracy: 0.xx (private recall 0.xx, general kept 0.xx)`.
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


def load_audit_set(path: Path = AUDIT_SET) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def evaluate_auditor(llm, rows: list[dict], *, threshold: int = 3) -> dict:
    """Accuracy of "withheld iff private", per-class rates and the rating histogram per label."""
    from clio_hf.config import PrivacyConfig
    from clio_hf.privacy import audit_privacy

    tree = datasets.Dataset.from_dict({"name": [r["name"] for r in rows], "summary": [r["summary"] for r in rows]})
    scores = audit_privacy(tree, llm, config=PrivacyConfig(min_privacy_score=threshold))["privacy_score"]
    flagged = [s is None or s < threshold for s in scores]
    private = [r["label"] == "private" for r in rows]
    n_private = max(1, sum(private))
    n_general = max(1, len(rows) - sum(private))
    return {
        "n": len(rows),
        "accuracy": sum(f == p for f, p in zip(flagged, private)) / max(1, len(rows)),
        "private_recall": sum(f and p for f, p in zip(flagged, private)) / n_private,
        "general_kept": sum(not f and not p for f, p in zip(flagged, private)) / n_general,
        "ratings": {label: dict(sorted(Counter(s for s, r in zip(scores, rows) if r["label"] == label).items(), key=str))
                    for label in ("private", "general")},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--llm", default="smollm2-135m")
    parser.add_argument("--threshold", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from clio_hf.llm import load_llm

    llm = load_llm(args.llm)
    start = time.perf_counter()
    report = evaluate_auditor(llm, load_audit_set(), threshold=args.threshold)
    seconds = time.perf_counter() - start
    print(f"| model | texts | accuracy | private withheld | general kept | ratings of private | ratings of general | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {llm.model_id} | {report['n']} | {report['accuracy']:.2f} | {report['private_recall']:.2f} | "
          f"{report['general_kept']:.2f} | {report['ratings']['private']} | {report['ratings']['general']} | {seconds:.1f} |")
    print(f"auditor accuracy: {report['accuracy']:.2f} (private recall {report['private_recall']:.2f}, "
          f"general kept {report['general_kept']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
