"""The deterministic personal-data finder: each pattern on what it must catch and on the look-alikes it must not."""

from __future__ import annotations

import pytest

from clio_hf.pii import KINDS, find_personal_data, personal_data_spans


@pytest.mark.parametrize("text, kind", [
    ("write to dana.obi+work@mail.example.co.uk today", "email"),
    ("call me on (312) 555-0147", "phone"),
    ("her mobile is +44 20 7946 0958", "phone"),
    ("card 4539 1488 0343 6467 was declined", "card"),
    ("IBAN DE89 3704 0044 0532 0130 00 for the invoice", "iban"),
    ("SSN 078-05-1120 on the form", "id_number"),
    ("passport number X4432871 was rejected", "id_number"),
    ("licence plate KD-482-LP", "id_number"),
    ("my server at 203.0.113.77 was hacked", "ip"),
    ("she lives at 14 Birch Lane in Dayton", "address"),
    ("code at github.com/mattlee-dev/family-budget", "profile_url"),
    ("see linkedin.com/in/chris-mendes", "profile_url"),
    ("a traceback from /home/dkowalski/app.py", "home_folder"),
    ("follow @jess.marlow_art for tattoos", "handle"),
    ("his login rob_t_1979 stopped working", "handle"),
    ("drafting a letter for John Miller about the fence", "person"),
    ("one reference is for Grace Obi, who was fired", "person"),  # the small tagger calls this an ORG
    ("marketing for the Novak brothers' bakery", "person"),
    ("Chloe's pregnancy and what to tell her school", "person"),
])
def test_finds_each_kind(text, kind):
    assert kind in KINDS
    assert kind in find_personal_data([text])[0]


@pytest.mark.parametrize("text", [
    "Regular expressions that check whether a string is a valid email address",
    "Router settings and local addresses such as 192.168.1.1 or 127.0.0.1",
    "Upgrading from Python 3.8 to 3.11.7 and pinning numpy 1.26.4",
    "Exposing port 8080 and handling HTTP errors such as 404 and 500",
    "Sales grew from 2019-01-15 to 2023-12-31 by 12,500 units",
    "Recipes and cooking advice",
    "Docker and container deployment",
    "Fixing Wi-Fi problems at home",
    "Task to assist with Java Enhanced For Loop and Space Shuttle Reaction Control",
    "Day Sculpting and its success",
    "Calculating 4,539,148,803 rows in the warehouse",
    "The @property decorator in Python classes",
])
def test_look_alikes_are_not_personal_data(text):
    assert find_personal_data([text]) == [[]]


def test_allowed_names_pass_and_others_still_count():
    texts = ["Essays about Abraham Lincoln's presidency", "Lincoln and Maria Lopez", None, ""]
    assert find_personal_data(texts) == [["person"], ["person"], [], []]
    assert find_personal_data(texts, allowed_names=["Abraham Lincoln"]) == [[], ["person"], [], []]


def test_several_kinds_are_sorted():
    assert find_personal_data(["Mail bob.lee@example.org or call 0412 555 803 at 14 Birch Lane"]) == [["address", "email", "phone"]]


def test_spans_give_the_matched_text():
    assert personal_data_spans(["Text Maria Lopez at +1 415 555 0199 or maria@example.org", "Debugging Python code"]) == [
        [("email", "maria@example.org"), ("phone", "+1 415 555 0199"), ("person", "Maria Lopez")], []]
    assert find_personal_data(["Mail bob.lee@example.org at 14 Birch Lane", "Debugging Python code"]) == [["address", "email"], []]


def test_tagged_spans_keep_only_name_words():
    spans = personal_data_spans(["Read 2 John and Matthew 4:18 - 22 again", "Power In Power", "@WebMethod public String hi()"])
    assert [s for s in spans[0] if s[1][0].isdigit() or ":" in s[1]] == [] and spans[1:] == [[], []]
