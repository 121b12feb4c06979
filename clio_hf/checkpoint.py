"""Work kept on disk, so that a stage killed midway resumes: finished datasets (`materialise`) and LLM calls.

`build_hierarchy` names clusters in many calls whose prompts follow from the data, the config and the seeds alone,
so a rerun sends exactly the calls of the first run, in the same order. `JournaledLLM` appends each finished call's
answers to a journal keyed by everything the answer depends on (model, prompts, budget, stop strings, temperature,
seeds); a rerun reads finished calls back from it and asks the model only for the rest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import datasets

logger = logging.getLogger(__name__)


class JournaledLLM:
    """Wraps an `LLM`; `generate` and `choose` answers are kept in a JSON Lines journal at `path` and replayed."""

    def __init__(self, llm, path: str | os.PathLike):
        self.llm, self.path, self.model_id = llm, Path(path), llm.model_id
        self.answers: dict[str, list] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:  # the last line of a run killed while writing it
                    continue
                self.answers[entry["key"]] = entry["answers"]
            logger.info("Resuming: %d finished LLM calls read back from %s", len(self.answers), self.path)
        self.replayed = 0

    def __getattr__(self, name):  # usage counters, tokenizer, option_logprobs ... of the wrapped backend
        return getattr(self.llm, name)

    def generate(self, prompts, *, max_new_tokens, stop=(), temperature=0.0, seeds=None):
        key = self._key("generate", prompts, max_new_tokens, list(stop), temperature, list(seeds) if seeds is not None else None)
        return self._remembered(key, lambda: self.llm.generate(prompts, max_new_tokens=max_new_tokens, stop=stop,
                                                               temperature=temperature, seeds=seeds))

    def choose(self, prompts, options):
        return self._remembered(self._key("choose", prompts, list(options)), lambda: self.llm.choose(prompts, options))

    def count_tokens(self, text: str) -> int:
        return self.llm.count_tokens(text)

    def truncate_text(self, text: str, max_tokens: int) -> str:
        return self.llm.truncate_text(text, max_tokens)

    def _key(self, *parts) -> str:
        return hashlib.sha256(json.dumps([self.model_id, *parts], sort_keys=True).encode()).hexdigest()

    def _remembered(self, key: str, ask) -> list:
        if key in self.answers:
            self.replayed += 1
            return list(self.answers[key])
        answers = list(ask())
        self.answers[key] = answers
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as journal:
            journal.write(json.dumps({"key": key, "answers": answers}) + "\n")
            journal.flush()
            os.fsync(journal.fileno())
        return answers


def without_journal(path: str | os.PathLike) -> None:
    """Remove a journal once the stage's result is saved: it is only needed to resume."""
    Path(path).unlink(missing_ok=True)


def materialise(path: Path, compute) -> datasets.Dataset:
    """Load what an earlier run saved at `path`, or compute and save it (atomically), then load it from disk.

    Loading from disk gives the dataset a stable fingerprint and cache directory, which the later stages' per-shard
    caches are keyed on.
    """
    if not (path / "state.json").exists():
        result = compute()
        if len(result) == 0:  # nothing to resume, and `load_from_disk` cannot read a dataset saved with no shards
            return result
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=".staging-"))
        result.save_to_disk(staging)
        try:
            staging.rename(path)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
    return datasets.load_from_disk(str(path))
