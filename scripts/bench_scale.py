"""Benchmark `clio_hf.annotate` itself at a million rows; prints a table.

    python scripts/bench_scale.py --rows 1000000

What runs is what a user runs: `clio_hf.annotate` with the default config (projection, privacy gates and all) on rows
whose Request facet is given as a column with precomputed vectors (`from_column(..., embedding_column=...)`), so
neither the LLM nor the embedder has to process a million rows here. The rows are synthetic but real-looking, and
the script says so: the request openings of the first ShareGPT records (`--components` of them) are embedded with the
real MiniLM, and each row is a seeded draw around one of them (Zipf-weighted components, noise of `--spread` on the
unit sphere); its value is that opening plus a case number, so every row is distinct.

The LLM is an instant stand-in that answers in the expected format and counts every prompt, labelled as such: its time
is clio_hf's own work. Afterwards a sample of the very prompts it got is replayed through the packaged SmolLM2-135M,
giving seconds per prompt of each kind and the projected LLM time of naming everything. Peak RSS per stage comes from
sampling this process's resident memory every 0.2 s.
"""

from __future__ import annotations

import argparse
import collections
import logging
import tempfile
import threading
import time
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa

import clio_hf
from clio_hf import prompts
from clio_hf.embed import load_embedder
from clio_hf.facets import REQUEST, from_column
from clio_hf.llm import load_llm
from clio_hf.sources import load_source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--components", type=int, default=4000, help="mixture components: real ShareGPT openings")
    parser.add_argument("--spread", type=float, default=0.7, help="noise around each component (unit-sphere scale)")
    parser.add_argument("--name-sample", type=int, default=6, help="prompts of each kind replayed through the real LLM")
    parser.add_argument("--workdir", help="where the rows and the run cache go (default: a temporary folder)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="clio-scale-"))

    start = time.perf_counter()
    path = _write_rows(workdir / f"rows-{args.rows}.arrow", args)
    print(f"generate (not part of the run): {time.perf_counter() - start:.1f} s, {path.stat().st_size / 1e9:.2f} GB Arrow file", flush=True)

    ds = datasets.Dataset.from_file(str(path))  # memory-mapped, as a loaded dataset is
    llm, memory = _InstantLLM(), _RssSampler()
    _count_levels(llm)
    facet = from_column(REQUEST, "request_given", embedding_column="request_vector")
    begin = time.perf_counter()
    result = clio_hf.annotate(ds, facets=[facet], llm=llm, embedder="minilm-l6", text_column="text",
                              cache_dir=workdir / "runs")
    total = time.perf_counter() - begin
    memory.stop()

    info = result.info
    print(f"\nclio_hf.annotate on {args.rows:,} rows (synthetic, see --help), Request given as a column with vectors; "
          f"LLM: an instant stand-in; clustering path: {info['clustering']}")
    print(f"{'stage':<18} {'wall s':>8} {'peak RSS GB':>12} {'anonymous GB':>13} {'LLM prompts':>12}")
    clock = memory.start
    for stage, seconds in info["timings"].items():
        peak, anonymous = memory.peak(clock, clock + seconds), memory.peak(clock, clock + seconds, anonymous=True)
        prompts_sent = sum(llm.count_by_stage.get(stage, {}).values())
        print(f"{stage:<18} {seconds:>8.1f} {peak:>12.2f} {anonymous:>13.2f} {prompts_sent:>12,}")
        clock += seconds
    print(f"{'total':<18} {total:>8.1f} {memory.peak(memory.start, time.time()):>12.2f} "
          f"{memory.peak(memory.start, time.time(), anonymous=True):>13.2f} {sum(llm.count.values()):>12,}")
    print("peak RSS counts the pages of memory-mapped Arrow files this process touched (the kernel drops them under "
          "pressure); anonymous is the memory the run itself holds.")
    levels = collections.Counter(result.hierarchy["level"])
    print(f"tree: {len(result.hierarchy)} nodes, per level {dict(sorted(levels.items()))}; prompts per kind {dict(llm.count)}")
    print("naming prompts per level (level 0: naming the base clusters; above: naming parents):")
    for level, kinds in sorted(llm.count_by_level.items()):
        print(f"    level {level}: {sum(kinds.values()):>6,}  {dict(kinds)}")
    _project_naming_time(llm, args.name_sample)


def _count_levels(llm: "_InstantLLM") -> None:
    """Tell the stand-in which level of the tree each prompt builds (the base is level 0)."""
    from clio_hf import hierarchy

    build_level = hierarchy._FacetTree._build_level

    def counted(tree, children, level, groups):
        llm.level = level
        try:
            return build_level(tree, children, level, groups)
        finally:
            llm.level = 0

    hierarchy._FacetTree._build_level = counted


def _project_naming_time(llm, sample_size: int) -> None:
    real = load_llm("smollm2-135m")
    projected, lines = 0.0, []
    for kind, sent in sorted(llm.sent.items()):
        sample = sent[:sample_size]
        begin = time.perf_counter()
        if kind == "choose":
            for chat, options in sample:
                real.choose([chat], options)
        else:
            real.generate([chat for chat, _ in sample], **sample[0][1])
        per_prompt = (time.perf_counter() - begin) / len(sample)
        projected += per_prompt * llm.count[kind]
        lines.append(f"    {kind:<9} {llm.count[kind]:>7,} prompts x {per_prompt:5.2f} s = {per_prompt * llm.count[kind] / 3600:6.2f} h")
    print("\nProjected LLM time of the same prompts with SmolLM2-135M on this machine (prompts x measured s/prompt):")
    print("\n".join(lines))
    print(f"    total    {projected / 3600:.2f} h")
    names = real.generate([chat for chat, _ in llm.sent["name"][:3]], **llm.sent["name"][0][1])
    print("Sample names from the real model:", [prompts.parse_name_and_summary(n) for n in names])


def _write_rows(path: Path, args) -> Path:
    """The synthetic rows (see the module docstring), written in batches to an Arrow stream file."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    rng = np.random.default_rng(0)
    openings = _request_openings(args.components)
    centres = _unit(load_embedder("minilm-l6").encode(openings).astype(np.float64))
    dim = centres.shape[1]
    weights = 1.0 / np.arange(1, len(centres) + 1) ** 0.6
    weights = rng.permutation(weights / weights.sum())
    schema = pa.schema([("text", pa.string()), ("request_given", pa.string()), ("request_vector", pa.list_(pa.float32(), dim))])
    with pa.OSFile(str(partial), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for start in range(0, args.rows, 50_000):
            n = min(50_000, args.rows - start)
            component = rng.choice(len(centres), size=n, p=weights)
            vectors = _unit(centres[component] + args.spread * _unit(rng.standard_normal((n, dim)))).astype(np.float32)
            values = [f"{openings[c]} (case {start + i})" for i, c in enumerate(component)]
            texts = [f"Please help me {value}" for value in values]
            embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim)
            writer.write_batch(pa.record_batch([pa.array(texts), pa.array(values), embedding], schema=schema))
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


class _RssSampler:
    """This process's resident memory every `interval` seconds, in a background thread: all of it (VmRSS) and its
    anonymous part (RssAnon). The rest is file-backed: pages of the memory-mapped Arrow files, which the kernel drops
    under pressure, so the anonymous part is the memory the run really needs."""

    def __init__(self, interval: float = 0.2):
        self.start, self.samples, self.running = time.time(), [], True
        self.thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self.thread.start()

    def _run(self, interval: float) -> None:
        while self.running:
            fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
            kb = {name: int(fields[name].split()[0]) for name in ("VmRSS", "RssAnon")}
            self.samples.append((time.time(), kb["VmRSS"] / 1e6, kb["RssAnon"] / 1e6))  # kB -> GB
            time.sleep(interval)

    def stop(self) -> None:
        self.running = False
        self.thread.join()

    def peak(self, begin: float, end: float, *, anonymous: bool = False) -> float:
        return max((anon if anonymous else rss for t, rss, anon in self.samples if begin <= t <= end + 0.2), default=float("nan"))


class _InstantLLM:
    """Answers every prompt at once in the expected format and keeps a sample of the prompts, for the cost projection.

    Names echo the first answer or group shown, so the tree is built over real-looking names; choices pick option 1
    (so the privacy audit rates every node 1 and withholds it: the gate's work is measured, not its verdict).
    """

    model_id = "instant-stand-in"

    def __init__(self):
        self.count: collections.Counter = collections.Counter()
        self.count_by_stage: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.count_by_level: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
        self.level = 0  # the tree level being built (set by `_count_levels`)
        self.sent: dict[str, list] = collections.defaultdict(list)

    def _counted(self, kind: str, n: int) -> None:
        self.count[kind] += n
        stage = "privacy" if kind == "audit" else "build_hierarchy"
        self.count_by_stage[stage][kind] += n
        if kind != "audit":
            self.count_by_level[self.level][kind] += n

    def generate(self, chats, *, max_new_tokens, stop=(), temperature=0.0, seeds=None):
        out = []
        for chat in chats:
            # a base cluster's name, from member answers, or a parent's, from its children's names
            kind = "name" if "<answers>" in chat[1]["content"] else "rename"
            self._counted(kind, 1)
            if len(self.sent[kind]) < 64 and temperature == 0.0:
                self.sent[kind].append((chat, {"max_new_tokens": max_new_tokens, "stop": list(stop)}))
            shown = [line[2:] for line in chat[1]["content"].splitlines() if line.startswith("- ")]
            first = " ".join((shown[0] if shown else "requests").split(":")[0].split()[:8])
            out.append(f"Topic of {first}</name>\n<summary>Requests like: {first}.")
        return out

    def choose(self, chats, options):
        if chats and chats[-1][-1]["content"] == "Rating: ":  # the privacy audit
            self._counted("audit", len(chats))
            return [0] * len(chats)
        self._counted("choose", len(chats))
        if len(self.sent["choose"]) < 64:
            self.sent["choose"] += [(chat, list(options)) for chat in chats[:8]]
        return [0] * len(chats)

    def count_tokens(self, text):
        return len(text.split())

    def truncate_text(self, text, max_tokens):
        return " ".join(text.split()[:max_tokens])


if __name__ == "__main__":
    main()
