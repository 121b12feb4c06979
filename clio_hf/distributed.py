"""`engine="ray"`: facet extraction and embedding as Ray Data `map_batches`, one model per actor.

What runs where. The driver plans the same shards as the in-process path (`extract.plan_shards`) and ships only the
shards that are not cached yet; each actor loads the LLM (or embedder) once and runs the in-process row functions
(`extract.facet_batch_values`, `embed.EmbedTask`) on the same micro-batches, so greedy answers are identical. As
each shard comes back, the driver writes it into the `datasets` cache under the in-process fingerprint: a killed
driver loses no finished shard, and a rerun (Ray or not) finds them; `extract.assemble_facets` then joins them, with
no model on the driver. `RayEngine` has the methods of `clio_hf.engine.Engine`, so `annotate` runs it like the local
one. Clustering and the hierarchy stay on the driver, since they work on embeddings and centroids, not rows.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa

from . import columns as C
from .backends import LLM, Embedder, load_embedder, load_llm
from .config import EmbedConfig, FacetConfig
from .embed import EmbedTask, GivenVectors, embed_column, embed_fingerprint
from .extract import assemble_facets, facet_batch_values, facet_outputs, is_cached, plan_shards, shard_batches, write_shard
from .facets import MAIN_FACETS, Facet

logger = logging.getLogger(__name__)

RAY_INSTALL = 'pip install "ray[data]>=2.50"'


@dataclass
class RayEngine:
    """Where the heavy stages run: an existing cluster (`address`, e.g. "ray://head:10001" or "auto") or a local one.

    `num_workers` is the number of model actors per stage (default: one per GPU, else one per CPU of the cluster).
    `work` records which worker computed what, one entry per shard or embedding batch.
    """

    address: str | None = None
    num_workers: int | None = None
    work: list[dict] = field(default_factory=list)

    def extract_facets(self, ds: datasets.Dataset, llm: str | LLM, *, model_id: str | None = None, llm_options: dict | None = None,
                       facets: Sequence[Facet] = MAIN_FACETS, config: FacetConfig = FacetConfig(),
                       column_prefix: str = "", model: LLM | None = None) -> datasets.Dataset:
        """`extract.extract_facets` with the LLM calls on Ray actors; `llm` is a spec string (each actor loads it)
        or a picklable LLM object. Same columns, same cache.

        `model`, the LLM loaded on the driver, is never called: its `model_id` (or `model_id=`) keys the cache.
        """
        asked = [f for f in facets if f.method == "llm"]
        if not asked:  # nothing for the actors: the LLM-free facets are computed here
            return assemble_facets(ds, [], facets=facets, config=config, column_prefix=column_prefix)
        _require_disk_cache(ds, "extract_facets")
        if model is None and not isinstance(llm, str):
            model = llm  # a picklable LLM object, which the actors get too
        model_id = model_id or (model.model_id if model is not None else llm)
        plans = plan_shards(ds, model_id, facets=asked, config=config, column_prefix=column_prefix)
        todo = [p for p in plans if p.pending]
        logger.info("ray extract_facets: %d of %d shards to compute", len(todo), len(plans))
        if todo:
            ray = self._ray()
            conversation = column_prefix + C.CONVERSATION
            # One Ray row per shard, so a batch of 1 is exactly one shard and micro-batches match the in-process path.
            table = pa.table({
                "shard": [p.index for p in todo],
                "conversations": [list(p.select(ds)[conversation]) for p in todo],
            })
            shards = ray.data.from_arrow(table, override_num_blocks=len(todo)).map_batches(
                _FacetActor,
                batch_size=1,
                batch_format="pyarrow",
                fn_constructor_kwargs={
                    "llm": llm, "llm_options": llm_options or {}, "config": config, "column_prefix": column_prefix,
                    "plans": {p.index: (p.start, [f for f in facets if f in p.pending]) for p in todo},
                },
                **self._actors(ray, len(todo)),
            )
            for batch in shards.iter_batches(batch_size=None, batch_format="pyarrow"):
                for done in batch.to_pylist():
                    plan = plans[done["shard"]]
                    values = json.loads(done["values"])
                    write_shard(plan.select(ds), plan, plan.pending,
                                lambda f: _Replay({column: values[key] for column, (key, _) in facet_outputs(f, column_prefix).items()}),
                                config=config, column_prefix=column_prefix)
                    self.work.append({"stage": "extract_facets", "shard": plan.index, "rows": plan.stop - plan.start,
                                      "prompts": done["prompts"], "pid": done["pid"], "host": done["host"]})
                    logger.info("ray extract_facets: shard %d/%d written (%d prompts by pid %d on %s)",
                                plan.index + 1, len(plans), done["prompts"], done["pid"], done["host"])
        # Every LLM facet's shards are cached now: the driver joins them (and computes the LLM-free facets).
        return assemble_facets(ds, plans, facets=facets, config=config, column_prefix=column_prefix)

    def embed_facets(self, ds: datasets.Dataset, embedder: str | Embedder, *, dimension: int | None = None, model_id: str | None = None,
                     facets: Sequence[Facet] = MAIN_FACETS, config: EmbedConfig = EmbedConfig(),
                     column_prefix: str = "", model: Embedder | None = None) -> datasets.Dataset:
        """`embed.embed_facets` with the encoding on Ray actors; same columns, same cache.

        `model`, the embedder loaded on the driver, only names the model and, when `dimension` is not given, tells it.
        """
        _require_disk_cache(ds, "embed_facets")
        if model is None and not isinstance(embedder, str):
            model = embedder  # a picklable Embedder object, which the actors get too
        if dimension is None:
            model = model if model is not None else load_embedder(embedder)
            dimension = int(model.encode(["dimension probe"]).shape[1])
        model_id = model_id or (model.model_id if model is not None else embedder)
        clustered = [f for f in facets if f.clustered]
        C.require_columns(ds, [C.facet_column(f, column_prefix) for f in clustered], "embed_facets")
        if any(f.conversation_weight and not f.embedding_column for f in clustered):
            C.require_columns(ds, [column_prefix + C.CONVERSATION], "embed_facets (a facet with a conversation_weight)")
        for facet in clustered:
            target = C.embedding_column(facet, column_prefix)
            if facet.embedding_column:  # vectors given in a column: nothing to encode
                ds = embed_column(ds, facet, GivenVectors(facet, C.facet_column(facet, column_prefix), target, dimension),
                                  dimension=dimension, model_id=model_id, config=config, column_prefix=column_prefix)
                continue
            if is_cached(ds, embed_fingerprint(ds, facet, model_id, column_prefix)):
                ds = embed_column(ds, facet, _never_called, dimension=dimension, model_id=model_id, config=config, column_prefix=column_prefix)
                continue
            values = list(ds[C.facet_column(facet, column_prefix)])
            rows = [i for i, v in enumerate(values) if v is not None]
            vectors = np.zeros((len(ds), dimension), dtype=np.float32)
            if rows:
                ray = self._ray()
                columns = {"row": rows, "value": [values[i] for i in rows]}
                if facet.conversation_weight:
                    conversations = ds[column_prefix + C.CONVERSATION]
                    columns["conversation"] = [conversations[i] for i in rows]
                table = pa.table(columns)
                blocks = max(1, min(len(rows) // config.batch_size, 64))
                encoded = ray.data.from_arrow(table, override_num_blocks=blocks).map_batches(
                    _EmbedActor, batch_size=config.batch_size, batch_format="pyarrow",
                    fn_constructor_kwargs={"embedder": embedder, "facet": facet}, **self._actors(ray, blocks),
                )
                for batch in encoded.iter_batches(batch_size=None, batch_format="pyarrow"):
                    flat = batch.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
                    vectors[batch.column("row").to_numpy()] = flat.reshape(-1, dimension)
                    self.work += [{"stage": "embed_facets", "rows": batch.num_rows, "pid": pid, "host": host}
                                  for pid, host in {(p, h) for p, h in zip(batch.column("pid").to_pylist(), batch.column("host").to_pylist())}]
            present = np.zeros(len(ds), dtype=bool)
            present[rows] = True
            ds = embed_column(ds, facet, _ReplayVectors(target, vectors, present), dimension=dimension, model_id=model_id,
                              config=config, column_prefix=column_prefix)
        return ds

    def record(self) -> dict:
        """The run record's `engine` entry: where the work ran and how it was spread."""
        return {"name": "ray", "address": self.address, "num_workers": self.num_workers,
                "shards_computed": sum(w["stage"] == "extract_facets" for w in self.work),
                "workers": len({(w["host"], w["pid"]) for w in self.work})}

    def _ray(self):
        try:
            import ray
        except ModuleNotFoundError as error:
            raise ModuleNotFoundError(f"engine='ray' needs Ray Data. Install it with: {RAY_INSTALL}") from error
        if not ray.is_initialized():
            if self.address:  # this clio_hf's code travels with the job; nodes need only its dependencies and models
                ray.init(address=self.address, logging_level=logging.WARNING, runtime_env=job_runtime_env())
            else:  # a local cluster with every CPU, and at least one per requested worker so they all get scheduled
                # Ray's default wait for its node agents (about 30 s) is too short on a saturated machine.
                os.environ.setdefault("RAY_agent_register_timeout_ms", "300000")
                ray.init(num_cpus=max(os.cpu_count() or 1, self.num_workers or 0), include_dashboard=False, logging_level=logging.WARNING)
            logger.info("ray: connected, resources %s", ray.cluster_resources())
        return ray

    def _actors(self, ray, num_inputs: int) -> dict:
        """Actor pool size and per-actor resources: one GPU each when the cluster has GPUs, else one CPU."""
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
        workers = self.num_workers or max(1, gpus or cpus)
        return {"concurrency": max(1, min(workers, num_inputs)), **({"num_gpus": 1} if gpus else {"num_cpus": 1})}


def job_runtime_env() -> dict:
    """A Ray runtime env that ships the driver's clio_hf package to the workers."""
    return {"py_modules": [str(Path(__file__).parent)]}


class _FacetActor:
    """One LLM per actor; each call gets one whole shard and returns its values of every pending facet (as JSON)."""

    def __init__(self, llm, llm_options: dict, config: FacetConfig, column_prefix: str, plans: dict[int, tuple[int, list[Facet]]]):
        self.llm = _CountingLLM(load_llm(llm, **llm_options) if isinstance(llm, str) else llm)
        self.config, self.prefix, self.plans = config, column_prefix, plans
        self.conversation = column_prefix + C.CONVERSATION

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = {"shard": [], "values": [], "prompts": [], "pid": [], "host": []}
        for shard, conversations in zip(batch.column("shard").to_pylist(), batch.column("conversations").to_pylist()):
            start, pending = self.plans[shard]
            before = self.llm.prompts
            values: dict[str, list] = {}
            for chunk in shard_batches(len(conversations), self.config.batch_size):
                answers = facet_batch_values(self.llm, pending, {self.conversation: conversations[chunk.start:chunk.stop]}, list(chunk),
                                             start, config=self.config, column_prefix=self.prefix)
                for key, chunk_values in answers.items():
                    values.setdefault(key, []).extend(chunk_values)
            out["shard"].append(shard)
            out["values"].append(json.dumps(values))
            out["prompts"].append(self.llm.prompts - before)
            out["pid"].append(os.getpid())
            out["host"].append(socket.gethostname())
        return pa.table(out)


class _EmbedActor:
    def __init__(self, embedder, facet: Facet):
        self.task = EmbedTask(load_embedder(embedder), facet, "value", "vector", "conversation")

    def __call__(self, batch: pa.Table) -> pa.Table:
        vectors = np.stack(self.task({name: batch.column(name).to_pylist() for name in batch.column_names if name != "row"})["vector"])
        vector = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
        return pa.table({"row": batch.column("row"), "vector": vector, "pid": [os.getpid()] * batch.num_rows,
                         "host": [socket.gethostname()] * batch.num_rows})


class _CountingLLM:
    """Counts the prompts an actor's LLM was sent, so the driver can report (and tests check) who did the work."""

    def __init__(self, llm: LLM):
        self.llm, self.model_id, self.prompts = llm, llm.model_id, 0

    def generate(self, prompts, **kwargs):
        self.prompts += len(prompts)
        return self.llm.generate(prompts, **kwargs)

    def choose(self, prompts, options):
        self.prompts += len(prompts)
        return self.llm.choose(prompts, options)


class _Replay:
    """Writes a facet's columns from values an actor computed: {column: one value per row of the shard}."""

    def __init__(self, columns: dict[str, list]):
        self.columns = columns

    def __call__(self, batch: dict, indices: list[int], offset: int) -> dict:
        return {column: [values[i] for i in indices] for column, values in self.columns.items()}


class _ReplayVectors:
    def __init__(self, column: str, vectors: np.ndarray, present: np.ndarray):
        self.column, self.vectors, self.present = column, vectors, present

    def __call__(self, batch: dict, indices: list[int]) -> dict:
        return {**batch, self.column: [self.vectors[i] if self.present[i] else None for i in indices]}


def _never_called(batch, indices):
    raise RuntimeError("engine='ray': a cached embedding column was recomputed on the driver.")


def _require_disk_cache(ds: datasets.Dataset, stage: str) -> None:
    if not ds.cache_files or not datasets.is_caching_enabled():
        raise ValueError(f"{stage} with engine='ray' hands finished shards to the datasets cache, so it needs a dataset "
                         "backed by files (load_from_disk / load_dataset) and caching enabled; `annotate` provides both.")
