"""Benchmark clustering and the hierarchy at a million rows in bounded memory; prints a table.

    python scripts/bench_scale.py --rows 1000000

The rows are synthetic but clustered, and the script says so: 384-d vectors drawn from a seeded two-level Gaussian
mixture on the unit sphere (topics, then sub-topics, Zipf-weighted), standing in for precomputed MiniLM embeddings
of the `request` facet. Each sub-topic is labelled with the opening words of a real ShareGPT request, so naming
prompts read like real ones; every row's value is distinct. Vectors and values are written once to an Arrow file and
read back memory-mapped, in batches.

Stages: `cluster` (k-means on a sample, then a streamed assignment pass, `clio_hf.cluster.stream_base_clusters`),
`hierarchy` (`build_hierarchy` with the real MiniLM embedder and an instant stand-in LLM that answers in the expected
format and counts every prompt, so the time is clio_hf's own work), then `naming sample`: a sample of the very
prompts the hierarchy sent, replayed through the packaged SmolLM2-135M, giving seconds per prompt of each kind and
the projected LLM time of naming everything. Peak RSS is this process's high-water mark (memory-mapped pages that
were read count too).
"""

from __future__ import annotations

import argparse
import collections
import logging
import resource
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa

import clio_hf
from clio_hf import prompts
from clio_hf.cluster import base_cluster_count, stream_base_clusters
from clio_hf.embed import load_embedder
from clio_hf.facets import REQUEST
from clio_hf.hierarchy import build_hierarchy
from clio_hf.llm import load_llm
from clio_hf.sources import load_source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--topics", type=int, default=40)
    parser.add_argument("--subtopics", type=int, default=100, help="per topic")
    parser.add_argument("--max-base-clusters", type=int, default=2000)
    parser.add_argument("--points-per-centroid", type=int, default=40, help="k-means training sample per centroid")
    parser.add_argument("--name-sample", type=int, default=6, help="prompts of each kind replayed through the real LLM")
    parser.add_argument("--workdir", help="where the Arrow file goes (default: a temporary folder)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="clio-scale-"))
    table: list[tuple[str, float, float, str]] = []

    def stage(name: str, start: float, note: str = "") -> None:
        table.append((name, time.perf_counter() - start, _peak_rss_gb(), note))
        print(f"  {name}: {table[-1][1]:.1f} s, peak RSS {table[-1][2]:.2f} GB {note}", flush=True)

    start = time.perf_counter()
    path = _write_rows(workdir / "rows.arrow", args)
    stage("generate (not part of the pipeline)", start, f"{path.stat().st_size / 1e9:.2f} GB Arrow file")

    ds = datasets.Dataset.from_file(str(path))  # memory-mapped
    config = clio_hf.ClusterConfig(max_base_clusters=args.max_base_clusters, points_per_centroid=args.points_per_centroid)
    start = time.perf_counter()
    labels = stream_base_clusters(ds, "request_embedding", config)
    k = base_cluster_count(len(ds), config)
    stage("cluster", start, f"k={k}, trained on {min(len(ds), k * args.points_per_centroid):,} rows, "
                            f"cluster sizes {np.bincount(labels).min()}..{np.bincount(labels).max()}")

    ds = datasets.concatenate_datasets([ds, datasets.Dataset.from_dict({"request_cluster": labels})], axis=1)
    llm, embedder = _InstantLLM(), load_embedder("minilm-l6")
    start = time.perf_counter()
    tree = build_hierarchy(ds, llm, embedder, facets=[REQUEST], config=clio_hf.HierarchyConfig())
    levels = collections.Counter(tree["level"])
    stage("hierarchy (stand-in LLM)", start, f"{len(tree)} nodes, per level {dict(sorted(levels.items()))}, "
                                             f"{sum(llm.count.values()):,} prompts")

    start = time.perf_counter()
    real = load_llm("smollm2-135m")
    projected, lines = 0.0, []
    for kind, sent in sorted(llm.sent.items()):
        sample = sent[: args.name_sample]
        begin = time.perf_counter()
        if kind == "choose":
            for chat, options in sample:
                real.choose([chat], options)
        else:
            real.generate([chat for chat, _ in sample], **sample[0][1])
        per_prompt = (time.perf_counter() - begin) / len(sample)
        projected += per_prompt * llm.count[kind]
        lines.append(f"    {kind:<9} {llm.count[kind]:>7,} prompts x {per_prompt:5.2f} s = {per_prompt * llm.count[kind] / 3600:6.2f} h")
    names = real.generate([chat for chat, _ in llm.sent["name"][:3]], **llm.sent["name"][0][1])
    stage("naming sample (SmolLM2-135M)", start, f"{args.name_sample} prompts of each kind")

    print(f"\nrows {args.rows:,} x {args.dim}, {args.topics * args.subtopics} mixture components, workdir {workdir}")
    print(f"{'stage':<38} {'wall s':>8} {'peak RSS GB':>12}  note")
    for name, seconds, rss, note in table:
        print(f"{name:<38} {seconds:>8.1f} {rss:>12.2f}  {note}")
    pipeline = sum(s for n, s, _, _ in table if not n.startswith("generate"))
    print(f"{'total (without generate)':<38} {pipeline:>8.1f}")
    print("\nProjected LLM time to name everything with SmolLM2-135M on this machine (prompts x measured s/prompt):")
    print("\n".join(lines))
    print(f"    total    {projected / 3600:.2f} h; calls grow with clusters ({k}), not rows ({args.rows:,})")
    print("Sample names from the real model:", [prompts.parse_name_and_summary(n) for n in names])


def _write_rows(path: Path, args) -> Path:
    """The synthetic rows (see the module docstring), written in batches to an Arrow stream file."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    rng = np.random.default_rng(0)
    topics = _unit(rng.standard_normal((args.topics, args.dim)))
    centres = _unit(np.repeat(topics, args.subtopics, axis=0) + 0.9 * _unit(rng.standard_normal((args.topics * args.subtopics, args.dim))))
    weights = 1.0 / np.arange(1, len(centres) + 1) ** 0.6
    weights = rng.permutation(weights / weights.sum())
    labels = _request_openings(len(centres))
    schema = pa.schema([("request", pa.string()), ("request_embedding", pa.list_(pa.float32(), args.dim))])
    with pa.OSFile(str(partial), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for start in range(0, args.rows, 50_000):
            n = min(50_000, args.rows - start)
            component = rng.choice(len(centres), size=n, p=weights)
            vectors = _unit(centres[component] + 0.7 * _unit(rng.standard_normal((n, args.dim)))).astype(np.float32)
            values = [f"{REQUEST.prefill} {labels[c]} (case {start + i})" for i, c in enumerate(component)]
            embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), args.dim)
            writer.write_batch(pa.record_batch([pa.array(values), embedding], schema=schema))
    return partial.rename(path)


def _request_openings(count: int) -> list[str]:
    """The first words of real ShareGPT requests, one per mixture component (cycled if there are too few)."""
    openings = []
    for record in load_source("sharegpt", limit=min(count, 17_000)):
        turn = next((m["value"] for m in record["conversations"] if m["from"] == "human"), "")
        words = " ".join(turn.split()[:10])
        if words:
            openings.append(words.lower().rstrip(".?!"))
    return [openings[i % len(openings)] for i in range(count)]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux


class _InstantLLM:
    """Answers every hierarchy prompt at once in the expected format and keeps the prompts, for the cost projection.

    Names echo the first answer or group shown, so the tree is built over real-looking names; choices pick option 1.
    """

    model_id = "instant-stand-in"

    def __init__(self):
        self.count: collections.Counter = collections.Counter()
        self.sent: dict[str, list] = collections.defaultdict(list)

    def generate(self, chats, *, max_new_tokens, stop=(), temperature=0.0, seeds=None):
        out = []
        for chat in chats:
            kind = "name" if chat[-1]["content"] == "<name>" else "propose"
            self.count[kind] += 1
            if len(self.sent[kind]) < 64 and temperature == 0.0:
                self.sent[kind].append((chat, {"max_new_tokens": max_new_tokens, "stop": list(stop)}))
            shown = [line[2:] for line in chat[1]["content"].splitlines() if line.startswith("- ")]
            first = " ".join((shown[0] if shown else "requests").split(":")[0].split()[:8])
            if kind == "name":
                out.append(f"{first}</name>\n<summary>Requests like: {first}.")
            else:
                out.append(" " + "\n".join(f"{i}. {' '.join(s.split(':')[0].split()[:6])}" for i, s in enumerate(shown[:4], 1)) + "</answer>")
        return out

    def choose(self, chats, options):
        self.count["choose"] += len(chats)
        if len(self.sent["choose"]) < 64:
            self.sent["choose"] += [(chat, list(options)) for chat in chats[:8]]
        return [0] * len(chats)

    def count_tokens(self, text):
        return len(text.split())

    def truncate_text(self, text, max_tokens):
        return " ".join(text.split()[:max_tokens])


if __name__ == "__main__":
    main()
