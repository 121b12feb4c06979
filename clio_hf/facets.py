"""Facets: the questions asked of every conversation, and the built-in sets."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Facet:
    """One question asked of every row.

    Args:
        name: display name; the column is its snake_case form (`Request` -> `request`).
        question: what the LLM is asked about the conversation.
        prefill: text the answer starts with; kept in the stored value, left out of the embedding.
        summary_criteria: what a good cluster name looks like; set it to get clusters and a hierarchy.
        numeric: `(lo, hi)` for an integer answer, constrained to those values.
        prompt: a custom question template; `{conversation}` is not needed, the conversation always comes first.
        method: `llm` asks the LLM; `language_id` computes the language offline (py3langid) from the user turns.
    """

    name: str
    question: str
    prefill: str = ""
    summary_criteria: str | None = None
    numeric: tuple[int, int] | None = None
    prompt: str | None = None
    method: Literal["llm", "language_id"] = "llm"

    def __post_init__(self):
        if not column_name(self.name):
            raise ValueError(f"Facet name {self.name!r} has no letters or digits to make a column name from.")
        if self.numeric is not None:
            lo, hi = self.numeric
            if not (isinstance(lo, int) and isinstance(hi, int) and lo <= hi):
                raise ValueError(f"Facet {self.name!r}: numeric must be (lo, hi) integers with lo <= hi, got {self.numeric!r}.")
            if self.summary_criteria is not None:
                raise ValueError(f"Facet {self.name!r}: a numeric facet cannot also be clustered (summary_criteria).")
        object.__setattr__(self, "numeric", None if self.numeric is None else tuple(self.numeric))

    @property
    def column(self) -> str:
        return column_name(self.name)

    @property
    def clustered(self) -> bool:
        return self.summary_criteria is not None

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "question": self.question,
            "prefill": self.prefill,
            "summary_criteria": self.summary_criteria,
            "numeric": list(self.numeric) if self.numeric else None,
            "prompt": self.prompt,
            "method": self.method,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Facet:
        data = dict(data)
        if data.get("numeric") is not None:
            data["numeric"] = tuple(data["numeric"])
        return cls(**data)


def column_name(name: str) -> str:
    """snake_case column name of a facet: `Request` -> `request`, `Concerning Score` -> `concerning_score`."""
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip())
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()


REQUEST = Facet(
    name="Request",
    question="In the conversation above, what did the user ask the AI assistant for?",
    prefill="The user's overall request for the assistant is to",
    # No example names in the criteria: the packaged 135M model copies any example it is shown instead of naming.
    summary_criteria="The cluster name is a short imperative sentence saying what the users asked for.",
)
LANGUAGE = Facet(
    name="Language",
    question="What is the main human language of the user's messages?",
    method="language_id",
)
TASK = Facet(
    name="Task",
    question="In the conversation above, what task did the user give the AI assistant?",
    prefill="The task is to",
    summary_criteria="The cluster name is a short active-verb phrase naming the task from the assistant's side.",
)
CONCERNING = Facet(
    name="Concerning",
    question=(
        "How concerning is this conversation from a safety point of view? 1: harmless everyday use; "
        "2: mildly sensitive; 3: somewhat concerning; 4: clearly concerning, such as an attempt to cause harm; "
        "5: extremely concerning and urgent."
    ),
    numeric=(1, 5),
)
SUMMARY = Facet(
    name="Summary",
    question="Summarise this text in one sentence: its topic and its purpose.",
    prefill="This text is about",
    summary_criteria="The cluster name is a short phrase naming the shared topic.",
)

MAIN_FACETS: tuple[Facet, ...] = (REQUEST, LANGUAGE, TASK, CONCERNING)
GENERIC_SUMMARY_FACETS: tuple[Facet, ...] = (SUMMARY,)
BUILTIN_FACETS: dict[str, Facet] = {f.column: f for f in (*MAIN_FACETS, *GENERIC_SUMMARY_FACETS)}


def resolve_facets(names: str | list[str] | tuple) -> tuple[Facet, ...]:
    """Facets from names (`"request,task"`, lenses such as `"textbook_quality"`) or Facet objects; an unknown name lists the known ones."""
    from .lenses import LENSES  # lenses are Facets too: imported here, where both modules are complete

    known = {**BUILTIN_FACETS, **LENSES}
    items = names.split(",") if isinstance(names, str) else list(names)
    facets = []
    for item in items:
        if isinstance(item, Facet):
            facets.append(item)
            continue
        key = column_name(str(item))
        if key not in known:
            raise ValueError(f"Unknown facet {item!r}. Built-in facets: {', '.join(BUILTIN_FACETS)}; lenses: "
                             f"{', '.join(LENSES)}; or pass clio_hf.Facet objects.")
        facets.append(known[key])
    columns = [f.column for f in facets]
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
        raise ValueError(f"Two facets share the column name(s) {duplicates}; give them distinct names.")
    if not facets:
        raise ValueError("No facets given.")
    return tuple(facets)
