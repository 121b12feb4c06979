"""Keyphrases: the terms that set one group of facet values apart from the rest of the facet (class-based TF-IDF).

`build_hierarchy` offers them as name candidates beside the LLM's and falls back on them, so a node never gets a
placeholder or one member's words. A keyphrase is published text: only a term that at least `min_rows` rows of the
facet contain is eligible, which keeps one person's words out of a name just as the privacy gates keep small nodes out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

from .prompts import GENERIC_WORDS

# Never a keyphrase: English function words and the words any facet value may use whatever its group.
_STOP = ENGLISH_STOP_WORDS | GENERIC_WORDS
_WORD = re.compile(r"(?u)\b[^\W\d_][^\W\d_]+\b")


def _terms(text: str) -> list[str]:
    """Words outside `_STOP`, and pairs of such words that stand side by side in the text (never across a stop word)."""
    words = [w if w not in _STOP else None for w in _WORD.findall(text.lower())]
    return [w for w in words if w] + [f"{a} {b}" for a, b in zip(words, words[1:]) if a and b]


class Keyphrases:
    """Fitted once on a facet's distinct values; `top` ranks terms for any grouping of those values."""

    def __init__(self, values: Sequence[str], rows_per_value: np.ndarray, *, min_rows: int):
        """`values` are distinct; `rows_per_value[i]` is how many rows hold value i (eligibility counts rows)."""
        self.rows_per_value = np.asarray(rows_per_value, dtype=np.float64)
        vectorizer = CountVectorizer(analyzer=_terms, binary=True)
        try:
            self.matrix = vectorizer.fit_transform(values).tocsr()
            self.terms = vectorizer.get_feature_names_out()
        except ValueError:  # no value holds a single eligible word
            self.matrix, self.terms = sp.csr_matrix((len(values), 0)), np.array([], dtype=object)
        rows_per_term = np.asarray(self.matrix.T @ self.rows_per_value).ravel()
        self.eligible = rows_per_term >= min_rows
        self.rows_per_term = rows_per_term

    def top(self, group_of_value: np.ndarray, num_groups: int, count: int = 5, min_group_rows: int = 2,
            any_term: bool = False, min_share: float = 0.0) -> list[list[str]]:
        """Per group 0..num_groups-1, up to `count` eligible terms, best first; a term overlapping a better one is skipped.

        `group_of_value[i]` is value i's group, or -1 for none. A term must also appear in `min_group_rows` of the
        group's rows (or all of them, in a smaller group) and in `min_share` of them. `any_term` drops the `min_rows`
        eligibility: only for a node the privacy gates will judge as too small or too scattered to publish as it stands.
        Scores are class-based TF-IDF over row counts: a term's share of the group's term occurrences times
        log(1 + average occurrences per group / the term's rows overall).
        """
        group_of_value = np.asarray(group_of_value)
        inside = np.flatnonzero(group_of_value >= 0)
        membership = sp.csr_matrix((self.rows_per_value[inside], (group_of_value[inside], inside)),
                                   shape=(num_groups, len(group_of_value)))
        # Sparse throughout: at a million rows the dense groups x terms matrix would not fit in memory.
        counts = (membership @ self.matrix).tocsr()
        totals = np.asarray(counts.sum(axis=1)).ravel()
        idf = np.log1p(max(float(totals.mean()) if num_groups else 1.0, 1.0) / np.maximum(self.rows_per_term, 1))
        group_rows = self._group_rows(membership)
        floor = np.maximum(np.minimum(min_group_rows, group_rows), np.ceil(min_share * group_rows))
        out = []
        for g in range(num_groups):
            row = slice(counts.indptr[g], counts.indptr[g + 1])
            terms, hits = counts.indices[row], counts.data[row]
            keep = (hits >= floor[g]) & (self.eligible[terms] | any_term)
            terms, scores = terms[keep], hits[keep] / max(totals[g], 1) * idf[terms[keep]]
            chosen: list[str] = []
            for j in terms[np.lexsort((terms, -scores))]:  # best first; ties in vocabulary order
                if len(chosen) == count:
                    break
                words = set(self.terms[j].split())
                if not any(words & set(c.split()) for c in chosen):
                    chosen.append(str(self.terms[j]))
            out.append(chosen)
        return out

    @staticmethod
    def _group_rows(membership: sp.csr_matrix) -> np.ndarray:
        return np.asarray(membership.sum(axis=1)).ravel()


def phrase_name(terms: Sequence[str]) -> str:
    """`["capital city", "country", "population"]` -> "Capital city, country and population"."""
    text = terms[0] if len(terms) == 1 else ", ".join(terms[:-1]) + " and " + terms[-1]
    text = re.sub(r"\s+", " ", text).strip()
    return text[:1].upper() + text[1:]


def phrase_summary(terms: Sequence[str], size: int) -> str:
    return f"{size} rows whose values most often mention: {', '.join(terms)}."
