"""Stage 6: `apply_privacy_gates` decides which hierarchy nodes may be published, after the Clio paper.

A node is published only if it passes every gate and so does every ancestor (a withheld node takes its subtree with
it):
- **rows**: at least `min_rows` rows under it;
- **users**: at least `min_users` distinct users under it, when the run names a user column (null ids never count,
  since nothing shows that two of them are different people);
- **pii**: no personal data in its name or summary that the deterministic finder sees (`pii.find_personal_data`:
  emails, numbers, addresses, handles, person names); the `pii` column names the kinds found;
- **audit**: an LLM rating of its name and summary of at least `min_privacy_score` on a 1-5 scale. A backend that
  gives the digits' log-probabilities (`option_logprobs`) has them calibrated first (below); one that only chooses
  takes its greedy digit; one that cannot constrain decoding answers in text, parsed and re-sampled at most
  `audit_retries` times. A node still unrated is withheld (the gate fails closed).

Why calibrate: a small model leans on one digit whatever it reads (measured on the audit set: SmolLM2-135M picks "1" for
all 120 texts, Qwen2.5-Coder-0.5B "4" for 118), yet the digits' probabilities still move with the text. Contextual
calibration (Zhao et al., 2021, "Calibrate before use") divides them by the probabilities the model gives a
content-free description ("N/A") and takes the largest ratio, so a rating says how the text moved the model off its
prior. `PrivacyConfig(audit_calibration="none")` takes the raw greedy digit, for a model that needs no correction.

The local result keeps every node and records the decision (`published`, `withheld_by`, `withheld_size`); the push
(`ClioResult.push_to_hub`) drops what is withheld, with the helpers at the end of this module.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence

import datasets
from datasets.utils import tqdm  # honours datasets.disable_progress_bars()

from . import columns as C
from . import layout as L
from . import prompts
from .backends import LLM, ChatPrompt
from .config import PrivacyConfig
from .groups import node_counts
from .pii import find_personal_data

logger = logging.getLogger(__name__)

AUDIT_PROMPT_VERSION = "2"  # 2: calibrated ratings
RATINGS = ("1", "2", "3", "4", "5")
GATES = ("rows", "users", "pii", "audit")
NUM_USERS, PII, PRIVACY_SCORE, PUBLISHED, WITHHELD_BY, WITHHELD_SIZE = (
    "num_users", "pii", "privacy_score", "published", "withheld_by", "withheld_size")
_AUDIT_BATCH = 64

# Our own wording of the rubric of the Clio paper's privacy auditor (appendix), for one node of the tree.
AUDIT_SYSTEM = (
    "You review short descriptions of groups of conversations before they are published. You rate how much a "
    "description could reveal about a particular person. Answer with one digit."
)
AUDIT_RUBRIC = """Rate the privacy of this description from 1 to 5:
1 = it identifies a particular person, or gives personal details such as a name, an email address, a phone number, a
home address or an account number
2 = it points at a very small group or at one person's unusual situation (a named small company, a specific family,
a particular patient or employee)
3 = it describes something that thousands of people do, without pointing at anyone
4 = it is a common topic shared by very many people
5 = it is completely general and says nothing about anyone"""


def audit_prompt(name: str, summary: str) -> ChatPrompt:
    text = f"{AUDIT_RUBRIC}\n\n<description>\nName: {name}\nSummary: {summary}\n</description>\n\nRating (1-5):"
    return [{"role": "system", "content": AUDIT_SYSTEM}, {"role": "user", "content": text},
            {"role": "assistant", "content": "Rating: "}]


def parse_rating(text: str) -> int | None:
    """The rating a free-text answer starts with, or None (e.g. "4", " 2.", "3 - general"; not "10" or "high")."""
    match = re.match(r"\s*\**([1-5])(?!\d|\.\d)", text or "")
    return int(match.group(1)) if match else None


def apply_privacy_gates(
    hierarchy: datasets.Dataset,
    data: datasets.Dataset,
    llm: LLM | None,
    *,
    config: PrivacyConfig = PrivacyConfig(),
    user_column: str | None = None,
    column_prefix: str = "",
) -> datasets.Dataset:
    """The hierarchy with `num_users` (with a user column), `pii` (with `config.detect_pii`), `privacy_score` (with the
    audit), `published`, `withheld_by` and `withheld_size` added; every other column is unchanged.

    Args:
        hierarchy: the companion dataset (see `build_hierarchy`).
        data: the rows, with `<facet>_cluster` columns and the user column.
        llm: the auditor; may be None when `config.audit` is False.
        config: thresholds and the audit switch.
        user_column: an input column identifying the user or account of each row.

    Example:
        >>> tree = apply_privacy_gates(result.hierarchy, result.data, llm, user_column="user_id")
        >>> tree.filter(lambda n: not n["published"])["withheld_by"]
        ['rows', 'users,audit', 'parent']
    """
    if user_column is not None:
        hierarchy = count_users(hierarchy, data, user_column=user_column, column_prefix=column_prefix)
    if config.detect_pii:
        hierarchy = scan_personal_data(hierarchy, config=config)
    if config.audit:
        if llm is None:
            raise ValueError("apply_privacy_gates: the privacy audit needs an LLM; pass llm= or PrivacyConfig(audit=False).")
        hierarchy = audit_privacy(hierarchy, llm, config=config)
    return mark_published(hierarchy, config=config)


def count_users(hierarchy: datasets.Dataset, data: datasets.Dataset, *, user_column: str, column_prefix: str = "") -> datasets.Dataset:
    """Add `num_users`: the distinct non-null values of `user_column` among the rows under each node."""
    C.require_columns(data, [user_column], "count_users")
    users = [u if u is None or isinstance(u, (str, int, float, bool)) else repr(u) for u in data[user_column]]
    counts = node_counts(hierarchy, data, users, column_prefix, "count_users")
    return C.replace_column(hierarchy, NUM_USERS, [len(c) - (None in c) for c in counts], datasets.Value("int64"))


def scan_personal_data(hierarchy: datasets.Dataset, *, config: PrivacyConfig = PrivacyConfig()) -> datasets.Dataset:
    """Add `pii`: the kinds of personal data found in each node's name and summary, comma-separated (null: none)."""
    texts = [f"{name or ''}\n{summary or ''}" for name, summary in zip(hierarchy["name"], hierarchy["summary"])]
    kinds = find_personal_data(texts, allowed_names=config.allowed_names)
    logger.info("scan_personal_data: %d of %d nodes name personal data %s", sum(map(bool, kinds)), len(kinds),
                dict(Counter(k for found in kinds for k in found)))
    return C.replace_column(hierarchy, PII, [",".join(k) or None for k in kinds], datasets.Value("string"))


def audit_privacy(hierarchy: datasets.Dataset, llm: LLM, *, config: PrivacyConfig = PrivacyConfig()) -> datasets.Dataset:
    """Add `privacy_score`: the LLM's 1-5 rating of each node's name and summary (null if it gave none)."""
    texts = list(zip(hierarchy["name"], hierarchy["summary"]))
    distinct = list(dict.fromkeys(texts))  # a parent of one child repeats its child: rate it once
    chats = [audit_prompt(name or "", summary or "") for name, summary in distinct]
    ratings: list[int | None] = []
    with tqdm(total=len(chats), desc="Privacy audit", unit="node", disable=not chats) as progress:
        for start in range(0, len(chats), _AUDIT_BATCH):
            ratings += _rate(llm, chats[start : start + _AUDIT_BATCH], config)
            progress.update(len(chats[start : start + _AUDIT_BATCH]))
    rating_of = dict(zip(distinct, ratings))
    scores = [rating_of[t] for t in texts]
    unrated = sum(s is None for s in scores)
    logger.info("audit_privacy: %d nodes (%d distinct texts) rated, %d unrated; ratings %s",
                len(scores), len(distinct), unrated, dict(sorted(Counter(s for s in scores if s).items())))
    return C.replace_column(hierarchy, PRIVACY_SCORE, scores, datasets.Value("int64"))


CONTENT_FREE = ("N/A", "N/A")


def calibrated_ratings(logprobs: Sequence[Sequence[float]], prior: Sequence[float]) -> list[int]:
    """For each row of log-probabilities of "1".."5", the rating whose probability grew most over `prior`'s."""
    return [max(range(len(RATINGS)), key=lambda i: row[i] - prior[i]) + 1 for row in logprobs]


def _rate(llm: LLM, chats: Sequence[ChatPrompt], config: PrivacyConfig) -> list[int | None]:
    """Calibrated log-probabilities, else a constrained choice among the digits, else text parsed with bounded retries."""
    scorer = getattr(llm, "option_logprobs", None)
    if scorer is not None and config.audit_calibration == "content_free":
        prior, *rows = scorer([audit_prompt(*CONTENT_FREE), *chats], list(RATINGS))
        return calibrated_ratings(rows, prior)
    try:
        picks = llm.choose(chats, list(RATINGS))
        ratings = [p + 1 if isinstance(p, int) and 0 <= p < len(RATINGS) else None for p in picks]
    except NotImplementedError:
        ratings = [None] * len(chats)
    unrated = [i for i, r in enumerate(ratings) if r is None]
    again = prompts.ask_until_parsed(
        llm, [chats[i] for i in unrated], lambda _, text: parse_rating(text), retries=config.audit_retries,
        max_new_tokens=config.audit_max_new_tokens, temperature=0.7,
        seed_key=lambda k, attempt: f"audit:{chats[unrated[k]][1]['content']}:{attempt}")
    for i, rating in zip(unrated, again):
        ratings[i] = rating
    return ratings


def mark_published(hierarchy: datasets.Dataset, *, config: PrivacyConfig = PrivacyConfig()) -> datasets.Dataset:
    """Add `published`, `withheld_by` (the failed gates, comma-separated, or `parent`; null when published) and
    `withheld_size` (the rows under a node that no published child accounts for; `size` for a withheld node).

    The users gate applies when `num_users` is present, the pii gate when `pii` is and the audit gate when
    `privacy_score` is.
    """
    cols = hierarchy.column_names
    nodes = hierarchy.select_columns([c for c in ("facet", "node_id", "level", "parent_id", "size", NUM_USERS, PII, PRIVACY_SCORE) if c in cols]).to_list()
    by_key = {(n["facet"], n["node_id"]): n for n in nodes}
    for node in sorted(nodes, key=lambda n: -n["level"]):  # parents before children
        failed = [gate for gate, ok in (
            ("rows", node["size"] >= config.min_rows),
            ("users", NUM_USERS not in node or node[NUM_USERS] >= config.min_users),
            ("pii", not node.get(PII)),
            ("audit", PRIVACY_SCORE not in node or (node[PRIVACY_SCORE] or 0) >= config.min_privacy_score),
        ) if not ok]
        parent = by_key.get((node["facet"], node["parent_id"])) if node["parent_id"] is not None else None
        if not failed and parent is not None and not parent["published"]:
            failed = ["parent"]
        node["published"], node["withheld_by"] = not failed, ",".join(failed) or None
    published_below = Counter()
    for node in nodes:
        if node["published"] and node["parent_id"] is not None:
            published_below[(node["facet"], node["parent_id"])] += node["size"]
    withheld = [(n["size"] - published_below[(n["facet"], n["node_id"])] if n["level"] > 0 else 0) if n["published"] else n["size"]
                for n in nodes]
    hierarchy = C.replace_column(hierarchy, PUBLISHED, [n["published"] for n in nodes], datasets.Value("bool"))
    hierarchy = C.replace_column(hierarchy, WITHHELD_BY, [n["withheld_by"] for n in nodes], datasets.Value("string"))
    return C.replace_column(hierarchy, WITHHELD_SIZE, withheld, datasets.Value("int64"))


def withheld_counts(hierarchy: datasets.Dataset) -> dict[str, dict[str, int]]:
    """Per facet, how many nodes each gate withheld (a node failing two gates counts for both) and in total."""
    if PUBLISHED not in hierarchy.column_names:
        return {}
    out: dict[str, Counter] = {}
    for facet, reasons in zip(hierarchy["facet"], hierarchy[WITHHELD_BY]):
        counter = out.setdefault(facet, Counter())
        for gate in (reasons or "").split(","):
            if gate:
                counter[gate] += 1
        counter["total"] += bool(reasons)
    return {facet: dict(sorted(c.items())) for facet, c in out.items()}


# ---------------------------------------------------------------------------------------------------- publishing
def with_decisions(hierarchy: datasets.Dataset, *, config: PrivacyConfig = PrivacyConfig()) -> datasets.Dataset:
    """The hierarchy as gated at annotate time; a result made before the gates existed is gated on its sizes alone."""
    if PUBLISHED in hierarchy.column_names:
        return hierarchy
    logger.warning("This result has no privacy decisions (made before clio_hf had them): applying the row threshold "
                   "(min_rows=%d) only", config.min_rows)
    return mark_published(hierarchy, config=config)


def published_hierarchy(hierarchy: datasets.Dataset) -> datasets.Dataset:
    """The published nodes of a gated hierarchy (see `with_decisions`). Their summaries are scrubbed of withheld
    nodes' names, since a parent's fallback summary lists its children's names.

    Raises:
        ValueError: when every top node would be withheld; the message names the gates and counts the nodes.
    """
    tops = [p for p, parent in zip(hierarchy[PUBLISHED], hierarchy["parent_id"]) if parent is None]
    if tops and not any(tops):
        counts = withheld_counts(hierarchy)
        sizes = Counter(hierarchy["facet"])
        detail = "; ".join(f"{facet}: {c['total']} of {sizes[facet]} nodes withheld, "
                           + ", ".join(f"{n} by {gate}" for gate, n in c.items() if gate != "total")
                           for facet, c in counts.items())
        raise ValueError(
            f"The privacy gates withhold all {len(tops)} top-level nodes, so there is nothing to publish ({detail}). "
            "Annotate more rows, audit with a larger LLM, or relax the gates (PrivacyConfig min_rows / min_users / "
            "min_privacy_score / audit / allowed_names; CLI --min-rows / --min-users / --min-privacy-score / --no-audit / "
            "--allow-names)."
        )
    withheld_names = set(hierarchy.filter(lambda p: not p, input_columns=PUBLISHED)["name"])
    published = hierarchy.filter(lambda p: p, input_columns=PUBLISHED)
    withheld_names -= set(published["name"])
    if not withheld_names:
        return published
    pattern = re.compile("|".join(re.escape(n) for n in sorted(withheld_names, key=len, reverse=True) if n), re.I)
    published = published.map(lambda s: {"summary": pattern.sub("(withheld)", s) if s else s}, input_columns="summary",
                              desc="Scrubbing summaries")
    if "keyphrases" not in published.column_names:
        return published
    # A keyphrase is one or two words: one that is, or is part of, a withheld name would point at that node.
    withheld_words = " ".join(n.casefold() for n in withheld_names if n)
    return published.map(lambda terms: {"keyphrases": [t for t in terms or [] if not re.search(
        rf"(?<!\w){re.escape(t.casefold())}(?!\w)", withheld_words) and not pattern.search(t)]},
        input_columns="keyphrases", desc="Scrubbing keyphrases")


# What a push does with each column. A column without a rule is left out: whatever a later feature adds to a row or a
# node stays local until someone decides how it is published.
KEEP, GATED, TEXT = "keep", "gated", "text"
HIERARCHY_COLUMNS = ("facet", "node_id", "level", "parent_id", "name", "summary", "name_source", "size", C.GROUP_COUNTS,
                     NUM_USERS, PII, PRIVACY_SCORE, PUBLISHED, WITHHELD_BY, WITHHELD_SIZE, "name_score", "keyphrases",
                     C.TIME_COUNTS, "size_before")


def row_column_rules(
    columns: Sequence[str], *, facets: Sequence, input_columns: Sequence[str] | None, text_columns: Sequence[str],
    user_column: str | None = None, column_prefix: str = "", time_column: str | None = None,
) -> dict[str, str | None]:
    """The rule of each row column on a push: `keep`; `gated` (null, or -1 for a cluster id, under a withheld node);
    `text` (raw or LLM-written text about one row: left out unless the user asks, then gated); None (no rule: left out).

    Args:
        columns: the result's row columns.
        facets: the run's facets (`summary.facets_from_info`).
        input_columns: the source's columns as `annotate` recorded them; None for a result made before it did, when
            every column that clio_hf does not add counts as an input column.
        text_columns: the source's text columns; they, `user_column` and `time_column` (exact times can single a
            person out) are `text`.
    """
    from .columns import rationale_column
    from .facets import Lens

    p = column_prefix
    rules: dict[str, str | None] = {p + C.CONVERSATION: TEXT, p + C.DUPLICATE_OF: KEEP}
    for facet in facets:
        rules[C.facet_column(facet, p)] = GATED if facet.clustered else KEEP
        if isinstance(facet, Lens):
            rules[rationale_column(facet, p)] = TEXT
        if facet.clustered:
            for name in (C.embedding_column(facet, p), C.cluster_column(facet, p), *C.projection_columns(facet, p)):
                rules[name] = GATED
            if facet.conversation_weight:  # the vector mixes in the user's own words: text, like the conversation
                rules[C.embedding_column(facet, p)] = TEXT
        # The input columns a facet was read from are the row's own text (or vectors of it), like the conversation.
        for given in (getattr(facet, "source_column", None), getattr(facet, "embedding_column", None)):
            if given:
                rules.setdefault(given, TEXT)
    inputs = [c for c in columns if c not in rules] if input_columns is None else input_columns
    for name in inputs:
        rules.setdefault(name, TEXT if name in (*text_columns, user_column, time_column) else KEEP)
    return {c: rules.get(c) for c in columns}


def withhold_rows(data: datasets.Dataset, hierarchy: datasets.Dataset, *, column_prefix: str = "",
                  row_text_columns: Sequence[str] = ()) -> datasets.Dataset:
    """Rows under a withheld base cluster of a gated hierarchy, or novel (-2), get `<facet>_cluster = -1` and a null facet value,
    embedding and map position, since they describe what the withheld node described; `row_text_columns` (a lens's
    rationale, ...) are nulled in a row under a withheld node of any facet."""
    withheld: dict[str, set[int]] = {}
    for facet, node, level, published in zip(hierarchy["facet"], hierarchy["node_id"], hierarchy["level"], hierarchy[PUBLISHED]):
        if level == 0 and not published:
            withheld.setdefault(facet, set()).add(node)
    # a novel row (`<facet>_cluster = -2`, placed later by `assign`) is under no node, so it is hidden as well
    facets = [f for f in dict.fromkeys(hierarchy["facet"]) if L.cluster_column(f, column_prefix) in data.column_names]
    row_text_columns = [c for c in row_text_columns if c in data.column_names]
    if not facets:
        return data

    def hide(batch):
        anywhere = [False] * len(batch[L.cluster_column(facets[0], column_prefix)])
        for facet in facets:
            cluster = L.cluster_column(facet, column_prefix)
            hidden = [c in withheld.get(facet, ()) or c == C.NOVEL_CLUSTER for c in batch[cluster]]
            anywhere = [a or h for a, h in zip(anywhere, hidden)]
            batch[cluster] = [C.NO_CLUSTER if h else c for h, c in zip(hidden, batch[cluster])]
            for col in (L.facet_column(facet, column_prefix), L.embedding_column(facet, column_prefix),
                        *L.projection_columns(facet, column_prefix)):
                if col in batch:
                    batch[col] = [None if h else v for h, v in zip(hidden, batch[col])]
        for col in row_text_columns:
            batch[col] = [None if h else v for h, v in zip(anywhere, batch[col])]
        return batch

    return data.map(hide, batched=True, desc="Withholding rows", features=data.features)
