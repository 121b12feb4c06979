import dataclasses

import datasets
import numpy as np
import pytest

from clio_hf.cluster import cluster_facets
from clio_hf.config import ClusterConfig
from clio_hf.embed import embed_facets
from clio_hf.facets import REQUEST
from fakes import HashEmbedder, ScriptedLLM, conversation, said_by_users


def _embedded(values, duplicate_of=None):
    data = {"request": values, "other": list(range(len(values))), "conversation": said_by_users(values)}
    if duplicate_of is not None:
        data["duplicate_of"] = duplicate_of
    return embed_facets(datasets.Dataset.from_dict(data), HashEmbedder(), facets=[REQUEST])


def test_embeddings_are_normalised_fixed_size_and_skip_the_prefill():
    ds = _embedded([REQUEST.prefill + " write a poem", "write a poem", None])
    assert ds.features["request_embedding"] == datasets.List(datasets.Value("float32"), length=32)
    a, b, missing = ds["request_embedding"]
    assert np.allclose(a, b) and np.isclose(np.linalg.norm(a), 1.0) and missing is None


@pytest.mark.parametrize("rows, per_cluster, cap, expected_k", [(1, 10, 1000, 1), (5, 10, 1000, 1), (100, 10, 1000, 10), (100, 10, 4, 4)])
def test_k_is_clamped(rows, per_cluster, cap, expected_k):
    values = [f"topic{i} word{i % 7} thing{i % 13}" for i in range(rows)]
    ds = cluster_facets(_embedded(values), facets=[REQUEST], config=ClusterConfig(rows_per_base_cluster=per_cluster, max_base_clusters=cap))
    labels = ds["request_cluster"]
    assert max(labels) + 1 <= expected_k and min(labels) == 0
    assert sorted(set(labels)) == list(range(max(labels) + 1))


def test_k_never_exceeds_distinct_values():
    ds = cluster_facets(_embedded(["same text"] * 30), facets=[REQUEST], config=ClusterConfig(rows_per_base_cluster=2))
    assert set(ds["request_cluster"]) == {0}


def test_ids_by_size_nulls_get_minus_one_and_columns_untouched():
    values = ["cats"] * 6 + ["dogs bark"] * 3 + ["fish swim fast"] * 9 + [None]
    source = _embedded(values)
    ds = cluster_facets(source, facets=[REQUEST], config=ClusterConfig(rows_per_base_cluster=6))
    labels = np.asarray(ds["request_cluster"])
    assert labels[-1] == -1
    sizes = np.bincount(labels[labels >= 0])
    assert list(sizes) == sorted(sizes, reverse=True)
    assert ds["other"] == source["other"] and ds["request"] == source["request"]


def test_duplicates_follow_their_original_and_do_not_train():
    values = ["alpha beta"] * 2 + ["gamma delta"] * 2 + ["epsilon"] * 2
    duplicate_of = [-1, 0, -1, 2, -1, 4]
    ds = cluster_facets(_embedded(values, duplicate_of), facets=[REQUEST], config=ClusterConfig(rows_per_base_cluster=1))
    labels = ds["request_cluster"]
    assert labels[0] == labels[1] and labels[2] == labels[3] and labels[4] == labels[5]


def test_deterministic_for_a_seed():
    values = [f"topic{i % 9} word{i % 5}" for i in range(200)]
    first = cluster_facets(_embedded(values), facets=[REQUEST])["request_cluster"]
    again = cluster_facets(_embedded(values), facets=[REQUEST])["request_cluster"]
    assert first == again


def test_missing_embeddings_column_is_a_clear_error():
    with pytest.raises(ValueError, match="request_embedding"):
        cluster_facets(datasets.Dataset.from_dict({"request": ["x"]}), facets=[REQUEST])


def test_a_conversation_weight_adds_the_users_words_to_the_answers_embedding():
    from clio_hf.embed import normalise

    values = [REQUEST.prefill + " write code"] * 2
    data = datasets.Dataset.from_dict({"request": values, "conversation": [conversation("python pandas join"), conversation("cook pasta")]})
    anchored = np.asarray(embed_facets(data, HashEmbedder(), facets=[REQUEST])["request_embedding"])
    alone = np.asarray(embed_facets(data, HashEmbedder(), facets=[dataclasses.replace(REQUEST, conversation_weight=0.0)])["request_embedding"])
    answer, users = normalise(HashEmbedder().encode(["write code", "python pandas join"]))
    assert REQUEST.conversation_weight == 2.0
    np.testing.assert_allclose(anchored[0], normalise((answer + 2.0 * users)[None])[0], atol=1e-6)
    assert not np.allclose(anchored[0], anchored[1]) and np.allclose(alone[0], alone[1])
    with pytest.raises(ValueError, match="conversation"):
        embed_facets(data.remove_columns("conversation"), HashEmbedder(), facets=[REQUEST])


def test_the_users_words_are_embedded_once_for_request_and_task(tmp_path):
    """Both built-in facets add the user's words; each row's are encoded once, not once a facet, with the same vectors;
    a rerun on the cache encodes nothing."""
    from clio_hf.facets import TASK

    class Counting(HashEmbedder):
        def __init__(self):
            super().__init__()
            self.texts: list[str] = []

        def encode(self, texts):
            self.texts += list(texts)
            return super().encode(texts)

    users = [f"user {i} asks about topic {i % 3}" for i in range(10)]
    data = datasets.Dataset.from_dict({"request": [REQUEST.prefill + f" answer {i}" for i in range(10)],
                                       "task": [TASK.prefill + f" task {i}" for i in range(10)],
                                       "conversation": [conversation(u) for u in users]})
    data.save_to_disk(tmp_path / "rows")
    data = datasets.load_from_disk(tmp_path / "rows")  # cache files, as annotate's rows have
    embedder = Counting()
    both = embed_facets(data, embedder, facets=[REQUEST, TASK])
    assert sorted(t for t in embedder.texts if t.startswith("user")) == sorted(users)
    in_memory = datasets.Dataset.from_dict(data.to_dict())  # no cache to read back: computed afresh
    for facet in (REQUEST, TASK):  # the same vectors as the facet embedded alone
        alone = embed_facets(in_memory, HashEmbedder(), facets=[facet])
        np.testing.assert_allclose(np.asarray(both[f"{facet.column}_embedding"]), np.asarray(alone[f"{facet.column}_embedding"]), atol=1e-6)
    again = Counting()
    embed_facets(data, again, facets=[REQUEST, TASK])
    assert again.texts == ["dimension probe"]


def test_a_conversation_weight_is_for_clustered_llm_facets_and_never_re_asks_the_llm(tmp_path):
    from clio_hf.extract import extract_facets
    from clio_hf.facets import Facet, from_column

    with pytest.raises(ValueError, match="conversation_weight"):
        Facet("Mood", "How does the user feel?", conversation_weight=1.0)  # not clustered
    assert from_column(REQUEST, "mine").conversation_weight == 0.0  # a given value has no conversation beside it
    assert Facet.from_dict(REQUEST.to_dict()) == REQUEST and "conversation_weight" not in REQUEST.question_dict()
    datasets.Dataset.from_dict({"conversation": [conversation("help me write a poem")]}).save_to_disk(tmp_path / "rows")
    rows = datasets.load_from_disk(tmp_path / "rows")
    llm = ScriptedLLM()
    first = extract_facets(rows, llm, facets=[REQUEST])
    asked = len(llm.prompts)
    again = extract_facets(rows, llm, facets=[dataclasses.replace(REQUEST, conversation_weight=2.0)])
    assert asked and len(llm.prompts) == asked and again["request"] == first["request"]
