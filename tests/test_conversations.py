from __future__ import annotations

import random
import re

import datasets
import pytest

from clio_hf import conversations
from clio_hf.config import ConversationConfig
from clio_hf.conversations import TURN_OVERHEAD, to_conversations


class WordTokens:
    """One token per whitespace-separated word: exact, readable budgets."""

    model_id = "words"

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def truncate_text(self, text: str, max_tokens: int) -> str:
        words = list(re.finditer(r"\S+", text))
        if len(words) <= max_tokens:
            return text
        return text[: words[max_tokens - 1].end()] if max_tokens > 0 else ""


def words(n: int, stem: str = "w") -> str:
    return " ".join(f"{stem}{i}" for i in range(n))


def turn(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def fit(messages: list[dict], max_tokens: int) -> list[dict]:
    ds = datasets.Dataset.from_dict({"messages": [messages]})
    config = ConversationConfig(max_tokens=max_tokens)
    return to_conversations(ds, WordTokens(), config=config)["conversation"][0]


def test_openai_messages_added_columns_and_input_untouched():
    data = {
        "id": [1, 2],
        "messages": [
            [turn("user", "hi"), turn("assistant", "hello")],
            [turn("system", "be brief"), turn("user", "why?"), turn("assistant", "because")],
        ],
    }
    ds = datasets.Dataset.from_dict(data)
    out = to_conversations(ds)
    assert out.column_names == ["id", "messages", "conversation", "duplicate_of"]
    assert out.select_columns(["id", "messages"]).to_dict() == ds.to_dict() == data
    assert out["conversation"] == data["messages"]
    assert out["duplicate_of"] == [-1, -1]
    assert out.features["duplicate_of"] == datasets.Value("int64")
    assert ds.column_names == ["id", "messages"]


def test_sharegpt_role_aliases_case_insensitive():
    roles = ["System", "human", "gpt", "USER", "chatgpt", "user", "bing", "user", "bard", "user", "model", "user",
             "bot"]
    expected = ["system", "user", "assistant", "user", "assistant", "user", "assistant", "user", "assistant", "user",
                "assistant", "user", "assistant"]
    ds = datasets.Dataset.from_dict({"conversations": [[{"from": r, "value": f"t{i}"} for i, r in enumerate(roles)]]})
    conversation = to_conversations(ds)["conversation"][0]
    assert [m["role"] for m in conversation] == expected
    assert [m["content"] for m in conversation] == [f"t{i}" for i in range(len(roles))]


def test_sequence_feature_read_as_dict_of_lists():
    message = {"from": datasets.Value("string"), "value": datasets.Value("string")}
    features = datasets.Features({"conversation_raw": datasets.Sequence(message)})
    rows = {"conversation_raw": [{"from": ["human", "gpt"], "value": ["a", "b"]}]}
    ds = datasets.Dataset.from_dict(rows, features=features)
    out = to_conversations(ds, conversation_column="conversation_raw")
    assert out["conversation"] == [[turn("user", "a"), turn("assistant", "b")]]


def test_text_detection_order_and_overrides():
    ds = datasets.Dataset.from_dict({"prompt": ["p"], "text": ["t"], "answer": ["a"]})
    assert to_conversations(ds)["conversation"] == [[turn("user", "t")]]
    assert to_conversations(ds, text_column="prompt")["conversation"] == [[turn("user", "p")]]
    out = to_conversations(ds, columns=["prompt", "answer"])
    assert out["conversation"] == [[turn("user", "prompt:\np\n\nanswer:\na")]]
    pairs = datasets.Dataset.from_dict({"chat": [[{"from": "human", "value": "q"}]], "text": ["ignored"]})
    assert to_conversations(pairs, conversation_column="chat")["conversation"] == [[turn("user", "q")]]


def test_content_rules_and_unstorable_characters():
    ds = datasets.Dataset.from_dict({"text": ["a\x00b", None, "plain"]})
    assert [c[0]["content"] for c in to_conversations(ds)["conversation"]] == ["ab", "", "plain"]
    # Arrow cannot even hold a lone surrogate; Python-side sources (json.loads) can produce one
    assert conversations._content("x\ud800y", 0, "text") == "xy"
    numbers = datasets.Dataset.from_dict({"n": [3, 4]})
    assert to_conversations(numbers, text_column="n")["conversation"] == [[turn("user", "3")], [turn("user", "4")]]
    content = [{"type": "text", "text": "look"}, {"type": "image_url", "text": None}, {"type": "text", "text": "here"}]
    parts = [{"role": "user", "content": content}, {"role": "assistant", "content": None}]
    ds = datasets.Dataset.from_list([{"messages": parts}])
    assert to_conversations(ds)["conversation"] == [[turn("user", "look\nhere"), turn("assistant", "")]]


def test_rows_opening_with_assistant_or_short_are_kept():
    ds = datasets.Dataset.from_dict({"messages": [[turn("assistant", "hi there")], [], [turn("user", "alone")]]})
    out = to_conversations(ds)
    assert out["conversation"] == [[turn("assistant", "hi there")], [], [turn("user", "alone")]]


def test_no_detectable_column_names_columns_and_overrides():
    ds = datasets.Dataset.from_dict({"body": ["x"], "title": ["y"]})
    with pytest.raises(ValueError) as error:
        to_conversations(ds)
    message = str(error.value)
    for needle in ["body", "title", "conversation_column=", "text_column=", "columns=", "--conversation-column",
                   "--text-column", "--columns"]:
        assert needle in message


@pytest.mark.parametrize(
    "options", [{"text_column": "nope"}, {"conversation_column": "nope"}, {"columns": ["body", "nope"]}]
)
def test_override_naming_missing_column(options):
    ds = datasets.Dataset.from_dict({"body": ["x"]})
    with pytest.raises(ValueError, match=r"nope.*Available columns: \['body'\]"):
        to_conversations(ds, **options)


def test_two_overrides_and_empty_dataset_and_tiny_budget():
    ds = datasets.Dataset.from_dict({"body": ["x"]})
    with pytest.raises(ValueError, match="pass one of"):
        to_conversations(ds, text_column="body", columns=["body"])
    with pytest.raises(ValueError, match="no rows"):
        to_conversations(ds.select([]), text_column="body")
    with pytest.raises(ValueError, match="too small"):
        to_conversations(ds, text_column="body", config=ConversationConfig(max_tokens=3))


@pytest.mark.parametrize(
    "values, row, excerpt",
    [
        ([[turn("user", "ok")], None], 1, "NoneType None"),
        ([b"\x89PNG\x00\xff", b"ok"], 0, "bytes b'\\x89PNG\\x00\\xff'"),
        ([{"a": 1}, {"a": 2}], 0, "dict {'a': 1}"),
        ([7, 2], 0, "int 7"),
        (["a string, not messages", "x"], 0, "text_column="),
        ([[{"role": "user", "content": {"nested": "dict"}}]], 0, "{'nested': 'dict'}"),
    ],
)
def test_non_conversation_row_names_stage_row_column_and_value(values, row, excerpt):
    ds = datasets.Dataset.from_dict({"raw": values})
    with pytest.raises(ValueError) as error:
        to_conversations(ds, conversation_column="raw")
    message = str(error.value)
    assert f"to_conversations: row {row}, column 'raw'" in message
    assert excerpt in message


def test_binary_text_column_is_an_error():
    ds = datasets.Dataset.from_dict({"blob": [b"\x00\x01\xfe" * 100]})
    with pytest.raises(ValueError, match=r"row 0, column 'blob'.*bytes b'\\x00\\x01\\xfe.*\.\.\."):
        to_conversations(ds, text_column="blob")


def test_unknown_role_names_row_column_and_role():
    ds = datasets.Dataset.from_dict({"messages": [[turn("user", "a")], [turn("user", "b"), turn("narrator", "c")]]})
    with pytest.raises(ValueError, match=r"row 1, column 'messages': message 1 has an unknown role.*'narrator'"):
        to_conversations(ds)


def test_developer_is_system_and_extra_roles_can_be_mapped():
    ds = datasets.Dataset.from_dict({"messages": [[turn("developer", "be brief"), turn("user", "a"), turn("tool", "{}"),
                                                   turn("function", "b")]]})
    with pytest.raises(ValueError, match=r"message 2 has an unknown role.*--roles NAME=skip"):
        to_conversations(ds)
    config = ConversationConfig(roles={"Tool": "skip", "function": "assistant"})
    assert config.roles == (("function", "assistant"), ("tool", "skip")) and hash(config)
    assert to_conversations(ds, config=config)["conversation"][0] == [
        turn("system", "be brief"), turn("user", "a"), turn("assistant", "b")]
    with pytest.raises(ValueError, match="'tool' -> 'bot'.*one of"):
        ConversationConfig(roles={"tool": "bot"})


def test_existing_output_column_needs_prefix():
    ds = datasets.Dataset.from_dict({"conversation": [[turn("user", "a")]]})
    with pytest.raises(ValueError, match="column_prefix="):
        to_conversations(ds)
    out = to_conversations(ds, column_prefix="clio_")
    assert out.column_names == ["conversation", "clio_conversation", "clio_duplicate_of"]
    assert out["clio_conversation"] == [[turn("user", "a")]]


def test_dedup_on_conversation_text_after_truncation():
    long_tail = [turn("user", words(5)), turn("assistant", words(5)), turn("user", words(50, "x"))]
    other_tail = [turn("user", words(5)), turn("assistant", words(5)), turn("user", words(50, "y"))]
    rows = [[turn("user", "a")], [turn("user", "b")], [turn("user", "a")], long_tail, other_tail, [turn("USER", "b")]]
    ds = datasets.Dataset.from_dict({"messages": rows})
    out = to_conversations(ds, WordTokens(), config=ConversationConfig(max_tokens=40))
    # rows 3 and 4 differ only past the budget: the LLM sees the same conversation
    assert out["duplicate_of"] == [-1, -1, 0, -1, 3, 1]
    no_dedup = to_conversations(ds, WordTokens(), config=ConversationConfig(max_tokens=40, dedup=False))
    assert no_dedup["duplicate_of"] == [-1] * 6


def test_dedup_on_key_column():
    ds = datasets.Dataset.from_dict({"text": ["a", "b", "c", "d", "e"], "user": ["u1", "u2", "u1", None, None]})
    out = to_conversations(ds, config=ConversationConfig(dedup_key="user"))
    assert out["duplicate_of"] == [-1, -1, 0, -1, -1]
    assert out.select_columns(["text", "user"]).to_dict() == ds.to_dict()
    with pytest.raises(ValueError, match=r"dedup_key='missing'.*Available columns"):
        to_conversations(ds, config=ConversationConfig(dedup_key="missing"))


def test_truncation_keeps_whole_turns_and_ends_on_a_reply():
    messages = [turn("user", words(5)), turn("assistant", words(5)), turn("user", words(5))]
    messages.append(turn("assistant", words(30)))
    assert fit(messages, 40) == messages[:2]
    assert fit(messages, 1000) == messages
    # the original may end on a user turn; a cut never does
    unanswered = messages[:3]
    assert fit(unanswered, 1000) == unanswered
    assert fit(unanswered + [turn("system", words(40))], 40) == messages[:2]


def test_first_pair_over_budget_is_shared_between_both_turns():
    budget = 40 - 2 * TURN_OVERHEAD
    short_user = [turn("user", words(10)), turn("assistant", words(100)), turn("user", "more"), turn("assistant", "ok")]
    assert fit(short_user, 40) == [short_user[0], turn("assistant", words(budget - 10))]
    both_long = [turn("user", words(100, "u")), turn("assistant", words(100, "a"))]
    assert fit(both_long, 40) == [turn("user", words(budget // 2, "u")), turn("assistant", words(budget // 2, "a"))]
    short_reply = [turn("user", words(100, "u")), turn("assistant", words(6, "a"))]
    assert fit(short_reply, 40) == [turn("user", words(budget - 6, "u")), short_reply[1]]


def test_single_long_user_turn_is_cut_to_the_budget():
    assert fit([turn("user", words(100))], 40) == [turn("user", words(40 - TURN_OVERHEAD))]
    ds = datasets.Dataset.from_dict({"text": [words(100)]})
    out = to_conversations(ds, WordTokens(), config=ConversationConfig(max_tokens=40))
    assert out["conversation"] == [[turn("user", words(36))]]
    # several user turns and no reply: whole turns while they fit
    assert fit([turn("user", words(10)), turn("user", words(100))], 40) == [turn("user", words(10))]


def test_leading_system_and_opening_assistant_turns_share_the_budget():
    system_first = [turn("system", words(10, "s")), turn("user", words(10, "u")), turn("assistant", words(100, "a"))]
    budget = 60 - 3 * TURN_OVERHEAD
    assert fit(system_first, 60) == system_first[:2] + [turn("assistant", words(budget - 20, "a"))]
    assistant_first = [turn("assistant", words(100, "g")), turn("user", words(5, "u"))]
    assistant_first.append(turn("assistant", words(100, "a")))
    assert fit(assistant_first, 60) == [
        turn("assistant", words((budget - 5) // 2, "g")),
        assistant_first[1],
        turn("assistant", words(budget - 5 - (budget - 5) // 2, "a")),
    ]


def test_windowed_counting_matches_whole_text_counting(monkeypatch):
    rng = random.Random(0)
    spaced = [" " * rng.randint(1, 30) + f"t{i}" for i in range(400)]
    samples = []
    for _ in range(60):
        messages = []
        for position in range(rng.randint(1, 5)):
            text = "".join(spaced[: rng.randint(0, 400)]) if rng.random() < 0.3 else words(rng.randint(0, 400))
            messages.append(turn(["user", "assistant"][position % 2], text))
        samples.append(messages)
    tokens = WordTokens()
    windowed = [conversations._fit(m, tokens, 120) for m in samples]
    monkeypatch.setattr(conversations, "WINDOW_CHARS_PER_TOKEN", 10**9)
    assert windowed == [conversations._fit(m, tokens, 120) for m in samples]


def test_approximate_tokens_without_llm_and_map_kwargs():
    ds = datasets.Dataset.from_dict({"text": ["x" * 100, "short"]})
    out = to_conversations(ds, config=ConversationConfig(max_tokens=20), batch_size=1)
    assert out["conversation"] == [[turn("user", "x" * (20 - TURN_OVERHEAD) * 4)], [turn("user", "short")]]


@pytest.fixture(scope="module")
def smollm2_tokens():
    from clio_hf.llm import smollm2_checkpoint

    path = smollm2_checkpoint()  # a missing package is a failure here, never a skip
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)

    class TokenizerOnly:
        model_id = "smollm2-tokenizer"

        def count_tokens(self, text):
            return len(tokenizer(text, add_special_tokens=False).input_ids)

        def truncate_text(self, text, max_tokens):
            encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            if len(encoding.input_ids) <= max_tokens:
                return text
            return text[: encoding.offset_mapping[max_tokens - 1][1]] if max_tokens > 0 else ""

    return TokenizerOnly()


def test_sharegpt_rows_with_the_real_tokenizer(smollm2_tokens):
    from clio_hf.sources import load_source

    ds = load_source("sharegpt", limit=200)
    out = to_conversations(ds, smollm2_tokens, config=ConversationConfig(max_tokens=256))
    assert out.select_columns(["id", "conversations"]).to_dict() == ds.to_dict()
    opening = [c[0]["role"] for c in out["conversation"] if c]
    assert opening.count("assistant") > 10
    for raw, conversation in zip(ds["conversations"], out["conversation"]):
        size = sum(smollm2_tokens.count_tokens(m["content"]) + TURN_OVERHEAD for m in conversation)
        # a cut inside a multi-byte character can re-tokenize one token longer
        assert size <= 256 + len(conversation)
        if len(conversation) < len(raw):
            assert conversation[-1]["role"] == "assistant" or all(m["role"] != "assistant" for m in conversation)
        assert all(r["value"].startswith(m["content"]) for m, r in zip(conversation, raw))
