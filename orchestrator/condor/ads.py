"""`condor_* -json` output and ClassAds turned into plain values: literals read straight from
JSON, expressions (the default RequestMemory, for example) evaluated by classad2 in the
context of their ad."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from orchestrator.condor.records import CondorError

# Attributes kept as their expression's text, not evaluated: a job's Requirements refers
# to the machine (TARGET), so only matching against a machine ad gives it a value.
RAW_EXPRESSIONS = frozenset({"requirements"})


def plain(ad: Any, attrs: Iterable[str]) -> dict[str, Any]:
    """Evaluate a classad2.ClassAd's attributes to plain Python values (None if undefined).
    A literal is its own value (the ad's item: one lookup); only an expression (an ExprTree
    item) is evaluated, in the context of the ad (RAW_EXPRESSIONS are kept as text)."""
    import classad2

    present = {name.lower() for name in ad}  # attribute names ignore case
    out: dict[str, Any] = {}
    for key in attrs:
        if key.lower() not in present:
            continue
        value = ad[key]
        if isinstance(value, classad2.ExprTree):
            if key.lower() in RAW_EXPRESSIONS:
                out[key] = str(value)
                continue
            value = ad.eval(key)
        out[key] = None if isinstance(value, classad2.Value) else value
    return out


_EXPR_START, _EXPR_END = "/Expr(", ")/"


def _literal(value: Any) -> bool:
    """True if classad2 would evaluate this JSON value to itself (null: UNDEFINED, None).
    HTCondor writes an expression as the string "\\/Expr(...)\\/", "/Expr(...)/" once decoded."""
    if value is None or value.__class__ in (int, float, bool):
        return True
    return value.__class__ is str and not (value.startswith(_EXPR_START)
                                           and value.endswith(_EXPR_END))


def _literal_values(item: Any, names: list[tuple[str, str]]) -> dict[str, Any] | None:
    """The wanted attributes of one JSON ad if each is a literal (names matched without
    regard to case, as in ClassAds); None if any needs classad2 to evaluate it."""
    if not isinstance(item, dict):
        return None
    out: dict[str, Any] = {}
    for name, _key in names:  # the usual case: the names as asked for, and nothing else
        if name in item:
            value = item[name]
            if value.__class__ is not int and not _literal(value):
                return None
            out[name] = value
    if len(out) == len(item):
        return out
    folded = {str(k).lower(): v for k, v in item.items()}
    out = {}
    for name, key in names:
        if key in folded:
            value = folded[key]
            if not _literal(value):
                return None
            out[name] = value
    return out


def _classad_from_json(item: Any) -> Any:
    """One decoded JSON ad parsed by classad2, written back as HTCondor wrote it: UTF-8 (the
    parser misreads \\u escapes) and each expression as "\\/Expr(...)\\/", the only form it
    takes for one; json.dumps writes "/" plainly, so every "/" is escaped again, which leaves
    every string as it was."""
    import classad2

    text = json.dumps(item, ensure_ascii=False).replace("/", "\\/")
    return classad2.parseOne(text, classad2.ParserType.JSON)


def _json_lists(text: str) -> list[Any]:
    """The items of one JSON list, or of several printed one after another (one per
    schedd when the queues of several are read in one command)."""
    decoder = json.JSONDecoder()
    items: list[Any] = []
    pos = 0
    while pos < len(text):
        raw, pos = decoder.raw_decode(text, pos)
        if not isinstance(raw, list):
            raise ValueError("not a list of ads")
        items += raw
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return items


def ads_from_json(text: str, attrs: Iterable[str]) -> list[dict[str, Any]]:
    """Parse `condor_* -json` output (a JSON list of ads, or nothing) and evaluate it.

    An ad whose wanted attributes are all literals (numbers, strings, booleans, null) is
    read straight from json.loads; one with an expression among them (or a list or a nested
    ad) is parsed and evaluated by classad2, in the context of the whole ad."""
    text = text.strip()
    if not text:
        return []
    if not text.startswith("["):
        raise CondorError(f"unexpected output instead of JSON ads: {text.splitlines()[0][:120]}")
    names = list(attrs)
    folded = [(name, name.lower()) for name in names]
    parsed: list[dict[str, Any] | None] = []
    ads: dict[int, Any] = {}
    try:
        # The bindings' JSON stream parser (25.x) stops after the first ad of a list, so the
        # list is split with json and only the ads that need it are parsed by classad2.
        raw = _json_lists(text)
        for n, item in enumerate(raw):
            values = _literal_values(item, folded)
            if values is None:
                ads[n] = _classad_from_json(item)
            parsed.append(values)
    except Exception as err:
        raise CondorError(f"cannot parse the ads returned: {err}") from err
    return [values if values is not None else plain(ads[n], names)
            for n, values in enumerate(parsed)]


def read_attrs(attrs: Sequence[str], grouped: bool) -> list[str]:
    """The attributes to read back from a job query's ads: for a grouped query, its
    projection and each group's JobCount."""
    return [*group_projection(attrs), "JobCount"] if grouped else list(attrs)



def group_projection(attrs: Sequence[str]) -> list[str]:
    """The projection of a grouped job query: the schedd applies the constraint to the
    groups, which carry only projected attributes, so JobStatus is always one of them."""
    return [*attrs, "JobStatus"] if "JobStatus" not in attrs else list(attrs)
