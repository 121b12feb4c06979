"""Clio's reconstruction test on ShareGPT: does clio_hf's hierarchy recover topics that it never saw?

Labels come from the keyword rules in `TOPIC_RULES` below, applied to the first user message of each ShareGPT
conversation (case-insensitive regular expressions). A conversation is labelled only when exactly one rule matches it;
the sample takes the same number of labelled conversations per topic (seeded). clio_hf then runs on the conversations
alone (the labels hidden) with the `request` facet, and the script reports:

- at the hierarchy level whose node count is closest to the number of labels, each node mapped to its majority label:
  accuracy (rows without a cluster count as wrong) and NMI against the labels;
- base-cluster purity (the share of rows that carry their base cluster's majority label);
- the same accuracy and NMI for a random assignment to as many groups (mean of 10 seeds) and for k-means on embeddings
  of the raw conversation text (the same embedder, the same k);
- the LLM judge: for each row whose base cluster has siblings, the LLM chooses among the sibling names (up to 9, the
  own cluster included) given the row's request value; the fraction that picks its own cluster, and chance.

    python scripts/eval_reconstruction.py [--rows 96] [--llm smollm2-135m] [--embedder minilm-l6] [--json out.json]

It ends with `reconstruction accuracy: 0.xx (raw-embedding baseline 0.yy, random 0.zz)`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
import tempfile
import time
from collections import Counter

import datasets
import numpy as np

TOPIC_RULES = {
    "python code": r"\bpython\b|\bpandas\b|\bdjango\b|\bflask\b|\bnumpy\b|\bdef \w+\(",
    "javascript/web code": r"\bjavascript\b|\breact\b|\bnode\.?js\b|\btypescript\b|\bcss\b|\bhtml\b",
    "email/letter writing": r"\bemail\b|\be-mail\b|\bcover letter\b|\bletter to\b",
    "marketing": r"\bmarketing\b|\bslogan\b|\bseo\b|\bad copy\b|\bbrand(ing)?\b|\bsocial media post",
    "math": r"\bequation\b|\bintegral\b|\bderivative\b|\bprobability\b|\balgebra\b|\bcalculus\b|\btheorem\b",
    "translation": r"\btranslate\b|\btranslation\b",
    "cooking/recipes": r"\brecipes?\b|\bcooking\b|\bingredients\b|\bbake\b",
    "fitness/health": r"\bworkout\b|\bexercise routine\b|\bdiet\b|\bcalories\b|\bweight loss\b",
}
_RULES = {label: re.compile(pattern, re.I) for label, pattern in TOPIC_RULES.items()}


def first_user_message(turns) -> str:
    for turn in turns or []:
        if (turn.get("from") or turn.get("role")) in ("human", "user"):
            return turn.get("value") or turn.get("content") or ""
    return ""


def label_of(text: str) -> str | None:
    hits = [label for label, rule in _RULES.items() if rule.search(text)]
    return hits[0] if len(hits) == 1 else None


def labelled_sample(rows: int, seed: int = 0) -> datasets.Dataset:
    from clio_hf.sources import load_sharegpt

    sharegpt = load_sharegpt()
    labels = [label_of(first_user_message(turns)) for turns in sharegpt["conversations"]]
    per_label = math.ceil(rows / len(TOPIC_RULES))
    rng = np.random.default_rng(seed)
    picked = []
    for label in TOPIC_RULES:
        candidates = [i for i, lab in enumerate(labels) if lab == label]
        picked += [(int(i), label) for i in rng.choice(candidates, size=min(per_label, len(candidates)), replace=False)]
    picked = sorted(picked)[: rows] if len(picked) > rows else sorted(picked)
    sample = sharegpt.select([i for i, _ in picked])
    return sample.add_column("topic", [label for _, label in picked])


def majority_accuracy(groups: np.ndarray, labels: list[str]) -> float:
    """Each group (>= 0) mapped to its majority label; rows in group -1 count as wrong."""
    correct = 0
    for group in set(groups.tolist()) - {-1}:
        correct += Counter(labels[i] for i in np.flatnonzero(groups == group)).most_common(1)[0][1]
    return correct / len(labels)


def nmi(groups: np.ndarray, labels: list[str]) -> float:
    """Normalised mutual information (arithmetic mean of the entropies); group -1 is one more group."""
    n = len(labels)
    joint = Counter(zip(groups.tolist(), labels))
    pg, pl = Counter(groups.tolist()), Counter(labels)
    mi = sum(c / n * math.log(c * n / (pg[g] * pl[lab])) for (g, lab), c in joint.items())
    entropy = lambda counts: -sum(c / n * math.log(c / n) for c in counts.values())  # noqa: E731
    denominator = (entropy(pg) + entropy(pl)) / 2
    return mi / denominator if denominator > 0 else 0.0


def level_groups(tree: list[dict], base: np.ndarray, level: int) -> np.ndarray:
    """Each row's ancestor at `level` (its base cluster's chain of parents), or -1."""
    by_id = {n["node_id"]: n for n in tree}
    up = {}
    for node_id in set(base.tolist()) - {-1}:
        node = by_id[node_id]
        while node["level"] < level and node["parent_id"] is not None:
            node = by_id[node["parent_id"]]
        up[node_id] = node["node_id"] if node["level"] == level else -1
    return np.array([up.get(b, -1) for b in base.tolist()])


def sibling_judge(llm, tree: list[dict], base: np.ndarray, values: list[str | None], seed: int = 0) -> tuple[float, float, int]:
    """(fraction picking the own base cluster, chance, rows judged) among rows whose base cluster has siblings."""
    from clio_hf import prompts

    by_id = {n["node_id"]: n for n in tree}
    rng = np.random.default_rng(seed)
    by_size: dict[int, list[tuple[list, int]]] = {}
    for row, (cluster, value) in enumerate(zip(base.tolist(), values)):
        if cluster < 0 or value is None or by_id[cluster]["parent_id"] is None:
            continue
        siblings = [n["node_id"] for n in tree if n["parent_id"] == by_id[cluster]["parent_id"] and n["node_id"] != cluster]
        if not siblings:
            continue
        options = [cluster, *rng.permutation(siblings)[:8].tolist()]
        options = [options[i] for i in rng.permutation(len(options))]
        chat = prompts.assign_parent_prompt((value, ""), [by_id[o]["name"] for o in options])
        chat[1]["content"] = chat[1]["content"].replace("A group of conversations is named", "A conversation's request is") \
            .replace("Which broader category fits this group best?", "Which group name fits this conversation best?")
        by_size.setdefault(len(options), []).append((chat, options.index(cluster)))
    hits = chance = total = 0
    for size, items in by_size.items():
        picks = llm.choose([chat for chat, _ in items], [str(i) for i in range(1, size + 1)])
        hits += sum(pick == own for pick, (_, own) in zip(picks, items))
        chance += len(items) / size
        total += len(items)
    return (hits / total, chance / total, total) if total else (float("nan"), float("nan"), 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--llm", default="smollm2-135m")
    parser.add_argument("--embedder", default="minilm-l6")
    parser.add_argument("--rows-per-base-cluster", type=int, default=6)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import clio_hf
    from clio_hf import prompts
    from clio_hf.cluster import kmeans, nearest
    from clio_hf.embed import load_embedder, normalise

    start = time.perf_counter()
    sample = labelled_sample(args.rows, args.seed)
    labels = sample["topic"]
    llm, embedder = clio_hf.load_llm(args.llm), clio_hf.load_embedder(args.embedder)
    config = clio_hf.ClioConfig(
        conversation=clio_hf.ConversationConfig(max_tokens=192),
        facets=clio_hf.FacetConfig(max_new_tokens=32, max_retries=1),
        cluster=clio_hf.ClusterConfig(rows_per_base_cluster=args.rows_per_base_cluster),
        hierarchy=clio_hf.HierarchyConfig(name_samples=2, assign_samples=2),
        privacy=clio_hf.PrivacyConfig(audit=False),  # reconstruction is about the local result, which keeps all nodes
    )
    with tempfile.TemporaryDirectory() as cache:
        result = clio_hf.annotate(sample.select_columns(["conversations"]), facets="request", llm=llm, embedder=embedder,
                                  config=config, cache_dir=cache)
    tree = [n for n in result.hierarchy.to_list() if n["facet"] == "request"]
    base = np.asarray(result.data["request_cluster"])
    counts = Counter(n["level"] for n in tree)
    level = min(counts, key=lambda lv: (abs(counts[lv] - len(TOPIC_RULES)), lv))
    k = counts[level]
    groups = level_groups(tree, base, level)

    rng = np.random.default_rng(args.seed)
    randoms = [rng.integers(0, k, size=len(labels)) for _ in range(10)]
    texts = [prompts.transcript([{"role": t["from"], "content": t["value"]} for t in turns])[:2000] for turns in sample["conversations"]]
    vectors = normalise(embedder.encode(texts))
    raw = nearest(vectors, kmeans(vectors, k, seed=args.seed))
    base_assigned = base[base >= 0]
    purity = sum(Counter(labels[i] for i in np.flatnonzero(base == c)).most_common(1)[0][1] for c in set(base_assigned.tolist())) / max(1, len(base_assigned))
    judge, chance, judged = sibling_judge(llm, tree, base, [prompts.strip_prefill(v, clio_hf.facets.REQUEST.prefill) if v else None for v in result.data["request"]], args.seed)

    figures = {
        "rows": len(labels), "labels": len(TOPIC_RULES), "label_counts": dict(Counter(labels)), "level": level, "k": k,
        "base_clusters": counts[0], "levels": dict(sorted(counts.items())),
        "clio_hf": {"accuracy": majority_accuracy(groups, labels), "nmi": nmi(groups, labels), "base_purity": purity},
        "raw_embedding_kmeans": {"accuracy": majority_accuracy(raw, labels), "nmi": nmi(raw, labels)},
        "random": {"accuracy": float(np.mean([majority_accuracy(r, labels) for r in randoms])),
                   "nmi": float(np.mean([nmi(r, labels) for r in randoms]))},
        "judge": {"own_cluster_picked": judge, "chance": chance, "rows_judged": judged},
        "llm": llm.model_id, "embedder": embedder.model_id, "seconds": round(time.perf_counter() - start, 1),
    }
    print(f"{figures['rows']} labelled ShareGPT rows, {figures['labels']} labels {figures['label_counts']}")
    print(f"levels (nodes per level): {figures['levels']}; compared at level {level} with k={k}; LLM {llm.model_id}, "
          f"embedder {embedder.model_id}; {figures['seconds']} s")
    print("| method | accuracy | NMI | base purity |")
    print("|---|---|---|---|")
    for name, key in (("clio_hf (request facet hierarchy)", "clio_hf"), ("raw-conversation embedding k-means", "raw_embedding_kmeans"), ("random assignment (10 seeds)", "random")):
        f = figures[key]
        print(f"| {name} | {f['accuracy']:.2f} | {f['nmi']:.2f} | {f.get('base_purity', float('nan')):.2f} |")
    print(f"LLM judge picks the row's own cluster among its siblings: {judge:.2f} of {judged} rows (chance {chance:.2f})")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(figures, out, indent=2)
    print(f"reconstruction accuracy: {figures['clio_hf']['accuracy']:.2f} (raw-embedding baseline "
          f"{figures['raw_embedding_kmeans']['accuracy']:.2f}, random {figures['random']['accuracy']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
