"""Facets: the questions asked of every conversation, the built-in sets, and the quality lenses (`Lens`).

The lens rationale stage is `lenses.py`; the lenses are defined here so that `resolve_facets` knows them without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .layout import column_name  # the snake_case rule, shared with the Space; also imported from here


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
        method: `llm` asks the LLM; `language_id` computes the language offline (py3langid) from the user turns;
            `column` takes the values from the input column `source_column` (summaries you already have): they are
            embedded, clustered and named like an LLM facet's, and no LLM is asked for them.
        source_column: with `method="column"`, the input column holding the values (strings; integers for a numeric
            facet). It may be the facet's own column name.
        embedding_column: an input column of precomputed vectors for a clustered facet, used instead of embedding its
            values. They must come from the run's embedder (names are embedded with it and compared with them).
        conversation_weight: for an LLM facet, how much the user's own words count beside the answer in the facet's
            embedding (and so its clusters): the unit vectors of the answer and of the user's turns are added, the
            second times this weight, and renormalised. 0 clusters on the answer alone, as Clio does; the built-in
            Request and Task use 2.0, because a small model's one-sentence answer loses what the conversation was
            about (measured in docs/quality.md: purity, top-level NMI and name faithfulness rise with it). Leave it 0 for a facet whose answer should group rows across topics
            (a sentiment, a language, a yes/no).
    """

    name: str
    question: str
    prefill: str = ""
    summary_criteria: str | None = None
    numeric: tuple[int, int] | None = None
    prompt: str | None = None
    method: Literal["llm", "language_id", "column"] = "llm"
    source_column: str | None = None
    embedding_column: str | None = None
    conversation_weight: float = 0.0

    def __post_init__(self):
        if not column_name(self.name):
            raise ValueError(f"Facet name {self.name!r} has no letters or digits to make a column name from.")
        if (self.method == "column") != (self.source_column is not None):
            raise ValueError(f"Facet {self.name!r}: method='column' and source_column= go together "
                             f"(got method={self.method!r}, source_column={self.source_column!r}).")
        if self.embedding_column is not None and self.summary_criteria is None:
            raise ValueError(f"Facet {self.name!r}: embedding_column= is for a clustered facet (set summary_criteria).")
        if self.numeric is not None:
            lo, hi = self.numeric
            if not (isinstance(lo, int) and isinstance(hi, int) and lo <= hi):
                raise ValueError(f"Facet {self.name!r}: numeric must be (lo, hi) integers with lo <= hi, got {self.numeric!r}.")
            if self.summary_criteria is not None:
                raise ValueError(f"Facet {self.name!r}: a numeric facet cannot also be clustered (summary_criteria).")
        if self.conversation_weight < 0 or (self.conversation_weight and (self.method != "llm" or not self.clustered)):
            raise ValueError(f"Facet {self.name!r}: conversation_weight must be >= 0, and is only for a clustered LLM facet "
                             f"(got {self.conversation_weight!r} with method={self.method!r}).")
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
            # only when set, so the fingerprints of facets without them stay as they were
            **({"source_column": self.source_column} if self.source_column else {}),
            **({"embedding_column": self.embedding_column} if self.embedding_column else {}),
            **({"conversation_weight": self.conversation_weight} if self.conversation_weight else {}),
        }

    def question_dict(self) -> dict:
        """`to_dict` without what only the embedding uses: the key of the facet's cached answers."""
        return {k: v for k, v in self.to_dict().items() if k != "conversation_weight"}

    @classmethod
    def from_dict(cls, data: dict) -> Facet:
        data = dict(data)
        if data.get("numeric") is not None:
            data["numeric"] = tuple(data["numeric"])
        return cls(**data)


REQUEST = Facet(
    name="Request",
    question="In the conversation above, what did the user ask the AI assistant for?",
    prefill="The user's overall request for the assistant is to",
    # No example names in the criteria: the packaged 135M model copies any example it is shown instead of naming.
    summary_criteria="The cluster name is a short imperative sentence saying what the users asked for.",
    conversation_weight=2.0,
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
    conversation_weight=2.0,
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

# Quality lenses: numeric facets whose scores also get a rationale (`lenses.explain_scores`) and bands in summaries.
BANDS = ("Poor", "Low", "Medium", "Good")
SCALES = ((1, 4), (1, 5))


@dataclass(frozen=True)
class Lens(Facet):
    """A numeric facet on a 1-4 or 1-5 quality scale whose scores get a rationale column and bands in summaries.

    `needs_response`: the lens judges an answer against its instruction, so every row must hold both (a conversation
    with an assistant turn, or `columns=[instruction, output]`).
    """

    needs_response: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.numeric not in SCALES or self.clustered:
            raise ValueError(f"Lens {self.name!r}: numeric must be (1, 4) or (1, 5) and it cannot be clustered.")

    def to_dict(self) -> dict:
        return {**super().to_dict(), "lens": True, "needs_response": self.needs_response}

    @classmethod
    def from_dict(cls, data: dict) -> Lens:
        data = {k: v for k, v in data.items() if k != "lens"}
        data["numeric"] = tuple(data["numeric"])
        return cls(**data)


def band(score: int | None, scale: tuple[int, int]) -> str | None:
    """The band of a score: 1 Poor, 2 Low, 3 Medium, 4 Good (and 5 Good on a 1-5 scale); None for no score."""
    if score is None:
        return None
    if tuple(scale) not in SCALES or not scale[0] <= score <= scale[1]:
        raise ValueError(f"band: score {score!r} is not on a lens scale {list(SCALES)} (got scale {tuple(scale)}).")
    return BANDS[min(score, 4) - 1]


TEXTBOOK_QUALITY = Lens(
    name="Textbook quality",
    question=(
        "How well would this text serve as a page of a good textbook, on a scale from 1 to 5? Judge whether it is "
        "correct, clearly written, well organised and explains its ideas step by step. 1 means no teaching value "
        "(spam, boilerplate, fragments or chit-chat); 2 means some facts but disorganised or shallow; 3 means a "
        "usable explanation with gaps; 4 means a clear, accurate explanation; 5 means an excellent, complete lesson."
    ),
    numeric=(1, 5),
)
LEARNING_VALUE = Lens(
    name="Learning value",
    question=(
        "How much could a reader learn from this text, on a scale from 1 to 5? Consider new knowledge, reasoning "
        "that can be followed, and skills that transfer to other problems. 1 means nothing to learn; 2 means a "
        "little common knowledge; 3 means some useful facts or steps; 4 means substantial knowledge or reasoning; "
        "5 means rich, reusable insight."
    ),
    numeric=(1, 5),
)
CODE_QUALITY = Lens(
    name="Code quality",
    question=(
        "How good is the program code in this text, on a scale from 1 to 4? Judge whether it is correct, readable, "
        "idiomatic and explained. 1 means there is no code, or the code is broken or unreadable; 2 means it works "
        "only partly or is hard to follow; 3 means it is correct and readable with minor issues; 4 means it is "
        "correct, clean and well explained."
    ),
    numeric=(1, 4),
)
INSTRUCTION_FOLLOWING = Lens(
    name="Instruction following",
    question=(
        "How well does the response do what the instruction asked, on a scale from 1 to 4? Judge whether every part "
        "of the request is addressed, constraints are respected and nothing irrelevant is added. 1 means it ignores "
        "or contradicts the instruction; 2 means it addresses part of it; 3 means it does what was asked with small "
        "lapses; 4 means it follows the instruction fully."
    ),
    numeric=(1, 4),
    needs_response=True,
)

LENSES: dict[str, Lens] = {lens.column: lens for lens in (TEXTBOOK_QUALITY, LEARNING_VALUE, CODE_QUALITY, INSTRUCTION_FOLLOWING)}


def from_column(facet: Facet | str, source_column: str, *, embedding_column: str | None = None) -> Facet:
    """A facet whose values are read from `source_column` instead of asked of the LLM (CLI `--facet-column F=COL`).

    A built-in name keeps its question, prefill and naming criteria, so `from_column("request", "my_summary")` is
    clustered and named like the LLM's Request facet.
    """
    import dataclasses

    base = resolve_facets(facet)[0] if isinstance(facet, str) else facet
    return dataclasses.replace(base, method="column", source_column=source_column, embedding_column=embedding_column,
                               conversation_weight=0.0)  # no conversation beside a given value


def resolve_facets(names: str | list[str] | tuple) -> tuple[Facet, ...]:
    """Facets from names (`"request,task"`, lenses such as `"textbook_quality"`) or Facet objects; an unknown name lists the known ones."""
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
