"""Every prompt clio_hf sends and every parser of what comes back, in one place for all backends.

Design, after the Clio paper: the conversation comes first (so all facets of one conversation share a prompt prefix),
then the question; the answer's opening tag is prefilled and generation stops at the closing tag. Numeric answers are
not parsed from free text at all: the backend chooses among the allowed digits. What a small model writes is cleaned
and validated here; anything unusable becomes None so the caller can re-sample or fall back.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Sequence
from typing import TypeVar

from .backends.protocols import LLM, ChatPrompt
from .facets import Facet

PROMPT_VERSION = "5"  # 4: an open answer that repeats our instructions is re-asked (`echoes_instructions`); 5: so is one
# that shares no content word with the conversation (`invents_content`), and what stays so falls back on the user's words

# Small models echo what the system message says about their own job ("to produce anonymous, aggregate statistics"
# became most task values of Qwen2.5-Coder-0.5B under prompt version 2), so it describes no job, only the answer.
SYSTEM = "You answer questions about a conversation between a user and an AI assistant, briefly and plainly."

# Tags of our own prompts. Inside a transcript they are neutralised so that text a user wrote can never close our
# tags or open an answer of its own.
_RESERVED_TAG = re.compile(r"<(/?)\s*(answer|conversation|name|summary|answers|contrastive_answers|groups)\s*>", re.I)
_ANY_TAG = re.compile(r"</?[a-zA-Z_][^<>]{0,40}>")
_PARTIAL_CLOSING_TAG = re.compile(r"<(?:/[a-z]*)?$")
_PLACEHOLDERS = {
    "name", "cluster name", "summary", "n/a", "none", "unknown", "todo", "...", "category", "group", "a user", "the user",
    "user", "users", "a group of conversations", "group of conversations", "conversations", "a conversation",
    "the assistant", "an ai assistant",
}

MAX_NAME_CHARS = 120
_NEXT_SENTENCE = re.compile(r"(?<=[a-z0-9][a-z0-9])[.!?](?:\s+(?=[A-Z])|(?=[A-Z][a-z]))")
# "This is a group of people who are ..." says nothing; what follows it may. A name left with fewer than two words
# outside _META_WORDS ("This is a list of the list") describes the prompt, not the conversations.
_SELF_REFERENCE = re.compile(
    r"^(?:this|it|these|they)\s+(?:is|are)\s+(?:a|an|the)?\s*(?:group|list|cluster|set|category|collection)\s+of\s+"
    r"(?:(?:people|users|conversations|answers|requests)\s+(?:who|that|which)\s+(?:are\s+)?)?", re.I)
_META_WORDS = {
    "a", "an", "the", "this", "that", "these", "it", "is", "are", "of", "and", "or", "to", "in", "for", "on", "with",
    "group", "groups", "list", "lists", "cluster", "name", "names", "category", "set", "people", "user", "users",
    "conversation", "conversations", "answer", "answers", "request", "requests", "topic", "task", "who", "which",
}


# Words that say nothing about what a group is about: a name made only of these (and _META_WORDS) is filler, and none of
# them is ever a keyphrase. Function words and how an LLM words a request ("find out", "determine") included.
GENERIC_WORDS = frozenset({
    "various", "variety", "miscellaneous", "misc", "general", "different", "specific", "unique", "other", "others",
    "range", "collection", "kind", "kinds", "type", "types", "things", "thing", "stuff", "items", "item", "question",
    "questions", "query", "queries", "task", "tasks", "topic", "topics", "categories", "group", "groups", "help",
    "helps", "assistance", "assist", "support", "information", "related", "like", "minded", "me", "my", "we", "our",
    "you", "your", "be", "has", "have", "about", "from", "by", "as", "at", "its", "their", "them", "they", "all", "some",
    "many", "more", "most", "such", "interested", "user", "users", "assistant", "ai", "ask", "asks", "asked", "asking",
    "request", "requests", "requesting", "want", "wants", "seeking", "seek", "need", "needs", "provide", "provides",
    "answer", "answers", "get", "make", "know", "use", "using", "way", "ways", "given", "certain", "based",
    "conversation", "conversations", "chat", "response", "responses", "find", "determine", "identify", "called",
    "named", "explain", "describe", "tell", "give", "learn", "discover", "explore", "understand", "obtain", "inquire",
    "looking",
})
_SELF_SENTENCE = re.compile(r"^(this|these|it|they|that|i|we) (is|are|am)\b", re.I)


def neutralise(text: str) -> str:
    return _RESERVED_TAG.sub(lambda m: f"&lt;{m.group(1)}{m.group(2)}&gt;", text)


def transcript(conversation: Sequence[dict]) -> str:
    """The conversation as plain text, one turn per block, with our own tags made inert."""
    turns = [f"{turn['role'].capitalize()}: {neutralise(turn['content'] or '')}" for turn in conversation]
    return "\n\n".join(turns)


def _material_then_task(material: str, ack: str, task: str, prefill: str) -> ChatPrompt:
    """[system, material, acknowledgement, task, prefill]: everything before the task is the prompt's shareable head.

    Prompts that differ only in the task (the facets of one conversation, the samples of one cluster name) share the
    head, so a backend with prefix reuse prefills the material once.
    """
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": material},
        {"role": "assistant", "content": ack},
        {"role": "user", "content": task},
        {"role": "assistant", "content": prefill},
    ]


# ---------------------------------------------------------------------------------------------------- facets
FACET_RULES = (
    "I will ask questions about it. Answer each inside <answer></answer> tags with one short sentence about what "
    "the user wrote. Leave out names and personal details."
)


def facet_question(facet: Facet) -> str:
    """The question turn for one facet; built once per facet and reused for every row.

    The answer format lives in the shared head (`FACET_RULES`), so the per-facet part stays short: it is prefilled
    once per row and facet.
    """
    if facet.prompt:
        return facet.prompt
    if facet.numeric:
        lo, hi = facet.numeric
        return f"{facet.question}\nAnswer with one whole number from {lo} to {hi}."
    return facet.question


def facet_answer_prefill(facet: Facet) -> str:
    return "<answer>" + (f"{facet.prefill}" if facet.prefill else "")


def facet_prompt(conversation_text: str, question: str, answer_prefill: str) -> ChatPrompt:
    material = f"Here is a conversation:\n<conversation>\n{conversation_text}\n</conversation>\n{FACET_RULES}"
    return _material_then_task(material, "I have read the conversation.", question, answer_prefill)


def numeric_options(facet: Facet) -> list[str] | None:
    """The allowed answers as strings when each is a single digit, so the backend can choose among them."""
    lo, hi = facet.numeric
    return [str(v) for v in range(lo, hi + 1)] if 0 <= lo and hi <= 9 else None


def parse_numeric(text: str, facet: Facet) -> int | None:
    match = re.match(r"\s*(-?\d+)", text or "")
    if not match:
        return None
    value = int(match.group(1))
    lo, hi = facet.numeric
    return value if lo <= value <= hi else None


def parse_open_answer(text: str) -> str | None:
    """A facet answer: the text before any closing tag, tags stripped, non-empty and with some letters in it."""
    text = (text or "").split("</answer>", 1)[0]
    text = _PARTIAL_CLOSING_TAG.sub("", text)  # the token budget can run out inside the closing tag
    text = " ".join(_ANY_TAG.sub(" ", text).split())
    if len(re.findall(r"[^\W\d_]", text)) < 2:
        return None
    return text[:1000]


_WORD = re.compile(r"[a-z0-9']+")
_FUNCTION_WORDS = frozenset(
    "a an the and or but of to in on at by for with about from as into over than then so if is are was were be been "
    "being it its this that these those their them they he she his her you your we our i me my what which who whom "
    "how when where why do does did can could will would should may might must not no".split()
)
_CONVERSATION_BLOCK = re.compile(r"<conversation>\n(.*)\n</conversation>", re.S)


def _material_and_conversation(prompt: ChatPrompt) -> tuple[str, str]:
    """A facet prompt's material turn, and the transcript inside its <conversation> block ("" without one)."""
    material = prompt[1]["content"] if len(prompt) > 1 else ""
    found = _CONVERSATION_BLOCK.search(material)
    return material, found.group(1) if found else ""


def echoes_instructions(answer: str, prompt: ChatPrompt, run: int = 4) -> bool:
    """Whether an answer repeats `run` consecutive words of our own instructions, two or more of them content words,
    that the conversation itself does not contain. Such an answer describes the prompt, not the conversation (a small
    model asked about a one-line question may answer "answer questions about a conversation between a user and an AI
    assistant"), so the caller re-asks and, failing that, records a null.
    """
    def runs(text: str) -> set[tuple[str, ...]]:
        words = _WORD.findall(text.lower())
        return {tuple(words[i : i + run]) for i in range(len(words) - run + 1)}

    material, conversation = _material_and_conversation(prompt)
    instructions = " \n ".join([m["content"] for m in prompt[:-1] if m is not prompt[1]]
                               + [_CONVERSATION_BLOCK.sub(" \n ", material)])
    echoed = (runs(answer) & runs(instructions)) - runs(conversation)
    return any(sum(w not in _FUNCTION_WORDS for w in words) >= 2 for words in echoed)


# Words any answer about any conversation may use: sharing only these with the conversation grounds nothing.
_ANSWER_WORDS = _FUNCTION_WORDS | frozenset(
    "user users assistant ask asks asked asking request requests help provide information answer answers question "
    "questions want wants need needs get make know tell give write use using like one two also more some any all each "
    "just very please thank thanks".split()
)
_LATIN_WORD = re.compile(r"[a-z][a-z0-9']+")
USERS_WORDS = "(in the user's words)"


def _content_stems(text: str) -> set[str]:
    return {w[:5] for w in _LATIN_WORD.findall(text.lower()) if len(w) > 2 and w not in _ANSWER_WORDS}


def invents_content(answer: str, prompt: ChatPrompt) -> bool:
    """Whether an answer shares no content word (by a 5-letter stem) with the conversation it should describe: it
    describes something else ("provide a response that is concise and clear"). Only judged where the conversation has
    some Latin-script words to share; an English answer about a Chinese conversation shares none and is fine."""
    theirs = _content_stems(_material_and_conversation(prompt)[1])
    return len(theirs) >= 5 and not (_content_stems(answer) & theirs)


def users_own_words(conversation: Sequence[dict], max_words: int = 7) -> str | None:
    """The opening words of the user's first message that has any: what a facet falls back on when every answer
    invented content or echoed our instructions. Short, so that it never copies eight words of a conversation."""
    for turn in conversation or []:
        if turn.get("role") == "user" and (turn.get("content") or "").strip():
            words = " ".join(turn["content"].split()).split(" ")[:max_words]
            return f"{USERS_WORDS} \"{' '.join(words).rstrip(' .,;:')}\""
    return None


def join_prefill(prefill: str, answer: str) -> str:
    if not prefill:
        return answer
    return " ".join(f"{prefill} {answer}".split())


def strip_prefill(value: str, prefill: str) -> str:
    """The part of a stored value that is the model's own answer (or the user's words it fell back on): what gets
    embedded and shown when naming."""
    if prefill and value.startswith(prefill):
        value = value[len(prefill) :]
    value = value.strip()
    if value.startswith(USERS_WORDS):
        value = value[len(USERS_WORDS):].strip().strip('"')
    return value


# ---------------------------------------------------------------------------------------------------- naming
# No example of a name here either (a tiny model copies it); the tags alone carry the format.
NAME_FORMAT = "Reply with the name inside <name></name> tags, then a one-sentence summary inside <summary></summary> tags."
_ACKS = ("I have read both lists.", "I have read the groups.")
_NAME_TASK = ("Write a short title, three to eight words, for the subject that the first list's items share and the "
              "second list's items lack.")
_RENAME_TASK = "Write a short title, three to eight words, for the one broader subject that covers all of these groups."
_NO_PII = "Leave out personal details."
_OUTSIDE_INTRO = "Second list, nearby items that the title must not fit:"
_CHILDREN_INTRO = "These are the names of related groups:"
_TERMS_INTRO = "Frequent words in the first list:"
# Words only our prompts use: a name or summary containing them talks about the prompt, not the conversations.
_PROMPT_ONLY = ("overall request", "broader categor", "broader subject", "contrastive", "these answers", "first list",
                "second list", "short title")


def _asked(facet: Facet) -> str:
    """The facet's question without its reference to a conversation the naming prompt does not show."""
    question = re.sub(r"^in the conversation above,\s*", "", facet.question.strip(), flags=re.I)
    return question[:1].upper() + question[1:]


def cluster_name_prompt(facet: Facet, inside: Sequence[str], outside: Sequence[str], terms: Sequence[str] = ()) -> ChatPrompt:
    """Asks for a base cluster's name from its members' values, against the nearest outsiders'. `terms` are keyphrases
    (words many rows share, so never one person's), which steer a small model towards the subject."""
    inside_list = "\n".join(f"- {neutralise(v)}" for v in inside)
    outside_list = "\n".join(f"- {neutralise(v)}" for v in outside) or "- (none)"
    hint = f"\n\n{_TERMS_INTRO} {', '.join(terms)}." if terms else ""
    material = (
        "First list, one group of items:\n"
        f"<answers>\n{inside_list}\n</answers>{hint}\n\n"
        f"{_OUTSIDE_INTRO}\n"
        f"<contrastive_answers>\n{outside_list}\n</contrastive_answers>"
    )
    task = f"{_NAME_TASK} {facet.summary_criteria or ''} {_NO_PII}\n{NAME_FORMAT}"
    return _material_then_task(material, _ACKS[0], task, "<name>")


def rename_parent_prompt(facet: Facet, children: Sequence[str], terms: Sequence[str] = ()) -> ChatPrompt:
    listing = "\n".join(f"- {neutralise(c)}" for c in children)
    hint = f"\n\nFrequent words in these groups: {', '.join(terms)}." if terms else ""
    material = f"{_CHILDREN_INTRO}\n<groups>\n{listing}\n</groups>{hint}"
    task = f"{_RENAME_TASK} {facet.summary_criteria or ''} {_NO_PII}\n{NAME_FORMAT}"
    return _material_then_task(material, _ACKS[1], task, "<name>")


NAME_STOP = ("</summary>",)


def parse_name_and_summary(text: str, forbidden: Sequence[str] = ()) -> tuple[str, str | None] | None:
    """(name, summary or None) from text that continues a `<name>` prefill; None when no usable name is there.

    `forbidden` holds texts of the prompt itself (its examples and instructions): a name that copies one of them
    is a failure, not a name.
    """
    head, _, rest = (text or "").partition("</name>")
    if not _:
        head = head.split("\n", 1)[0]
    name = clean_name(head, forbidden)
    if name is None:
        return None
    summary = None
    if "<summary>" in rest:
        summary = clean_summary(rest.split("<summary>", 1)[1], forbidden)
    return name, summary


def clean_name(text: str, forbidden: Sequence[str] = ()) -> str | None:
    text = " ".join(_ANY_TAG.sub(" ", text or "").replace("<", " ").replace(">", " ").split())
    text = _SELF_REFERENCE.sub("", text.strip(" \"'`*_#-:;,.!?")).strip(" \"'`*_#-:;,.!?")
    text = _NEXT_SENTENCE.split(text, 1)[0]  # a name is one phrase; a second sentence is the model rambling on
    if len(text) > MAX_NAME_CHARS:
        text = text[:MAX_NAME_CHARS].rsplit(" ", 1)[0].rstrip(" ,;:-")
    if len(re.findall(r"[^\W\d_]", text)) < 3 or text.casefold() in _PLACEHOLDERS or copies_prompt(text, forbidden):
        return None
    if not _reads_like_words(text) or len(set(re.findall(r"[a-z]+", text.casefold())) - _META_WORDS) < 2:
        return None
    return text[:1].upper() + text[1:]


def _reads_like_words(text: str) -> bool:
    """Rejects identifier soup such as `AASA_SxS_AI_Lambda_2023`: names are words separated by spaces."""
    words = text.split()
    letters = sum(ch.isalpha() or ch.isspace() for ch in text)
    return "_" not in text and all(len(w) <= 24 for w in words) and letters >= 0.8 * len(text)


def copies_prompt(text: str, forbidden: Sequence[str]) -> bool:
    """Whether `text` repeats one of the prompt's own examples or instructions, not an answer: most of a phrase's
    words, or a run of four of its words with two or more that are not generic ("a short active-verb")."""
    sequence = re.findall(r"[a-z]+", text.casefold())
    words, runs = set(sequence), _runs(sequence)
    for phrase in forbidden:
        phrase_sequence = re.findall(r"[a-z]+", phrase.casefold())
        phrase_words = set(phrase_sequence)
        if phrase_words and len(words & phrase_words) >= 0.75 * len(phrase_words) and len(phrase_words) <= 2 * len(words):
            return True
        if runs & _runs(phrase_sequence):
            return True
    return any(words in text.casefold() for words in _PROMPT_ONLY)


def _runs(words: Sequence[str], length: int = 4) -> set[tuple[str, ...]]:
    """Runs of `length` consecutive words with at least two outside _META_WORDS: what copying an instruction leaves."""
    runs = (tuple(words[i: i + length]) for i in range(len(words) - length + 1))
    return {run for run in runs if len({w for w in run if len(w) > 1} - _META_WORDS) >= 2}


def clean_summary(text: str, forbidden: Sequence[str] = ()) -> str | None:
    text = " ".join(_ANY_TAG.sub(" ", (text or "").split("</", 1)[0]).split())
    if len(re.findall(r"[^\W\d_]", text)) < 12 or copies_prompt(text, forbidden):
        return None
    sentences = re.split(r"(?<=[.!?])\s+", text)
    return " ".join(sentences[:2])[:400]


def copies_member(name: str, values: Sequence[str], run: int = 5) -> bool:
    """Whether a name repeats one member's words (a run of `run` words, two of them content words, or the whole name
    when it has 3+ words): a name must be about the group, and one person's words in it would slip past the gates."""
    words = re.findall(r"[a-z0-9]+", name.casefold())
    whole, runs = f" {' '.join(words)} ", _runs(words, run)
    for value in values:
        theirs = re.findall(r"[a-z0-9]+", value.casefold())
        if (len(words) >= 3 and whole in f" {' '.join(theirs)} ") or runs & _runs(theirs, run):
            return True
    return False


def is_filler(name: str) -> bool:
    """Whether a name says nothing about its group: no word outside generic talk of groups, requests and variety, or a
    sentence about itself ("This is a ...")."""
    words = set(re.findall(r"[a-z]+", name.casefold()))
    return bool(_SELF_SENTENCE.match(name)) or not (words - _META_WORDS - GENERIC_WORDS)


def prompt_examples(facet: Facet) -> list[str]:
    """Example texts quoted inside our naming prompts, and their instructions; a name that repeats one is rejected."""
    quoted = re.findall(r"(?:^|\s)'([^']{3,}?)'(?=[\s.,;]|$)", facet.summary_criteria or "")
    instructions = [SYSTEM, FACET_RULES, _NAME_TASK, _RENAME_TASK, _NO_PII, NAME_FORMAT, _OUTSIDE_INTRO,
                    _CHILDREN_INTRO, _TERMS_INTRO, "one group of items", "Frequent words in these groups", _asked(facet), facet.summary_criteria or "", facet.question]
    return quoted + ["a name of at most ten words", "one sentence", "Name", "Summary", *_ACKS, *instructions]


# ---------------------------------------------------------------------------------------------------- lens rationales
RATIONALE_PREFILL = "Because"


def rationale_question(facet: Facet, score: int, band: str) -> str:
    """The follow-up turn that asks why a lens gave its score; the score was chosen first (see `lenses`)."""
    lo, hi = facet.numeric
    return (
        f"{facet.question}\nThe score given is {score} on the scale from {lo} to {hi} ({band}). In one short sentence "
        "inside <answer></answer> tags, say what in the text earns this score. Leave out personal details."
    )


def rationale_answer_prefill() -> str:
    return f"<answer>{RATIONALE_PREFILL}"


Parsed = TypeVar("Parsed")


def ask_until_parsed(llm: LLM, chats: Sequence[ChatPrompt], parse: Callable[[int, str], Parsed | None], *, retries: int,
                     max_new_tokens: int, temperature: float, seed_key: Callable[[int, int], str],
                     stop: Sequence[str] = ()) -> list[Parsed | None]:
    """Each chat's answer as `parse(i, text)` gives it: greedy first, then `retries` seeded samples at `temperature`
    of the chats whose answer `parse` rejected (None). A sample's seed is the CRC-32 of `seed_key(i, attempt)`, so
    reruns and other batchings draw the same answers. Still None after the last attempt: None."""
    parsed: list[Parsed | None] = [None] * len(chats)
    pending = list(range(len(chats)))
    for attempt in range(retries + 1):
        if not pending:
            break
        sampled = attempt > 0
        outputs = llm.generate(
            [chats[i] for i in pending], max_new_tokens=max_new_tokens, stop=list(stop),
            temperature=temperature if sampled else 0.0,
            seeds=[zlib.crc32(seed_key(i, attempt).encode()) for i in pending] if sampled else None,
        )
        for i, text in zip(pending, outputs):
            parsed[i] = parse(i, text)
        pending = [i for i in pending if parsed[i] is None]
    return parsed
