"""Request validation under attack: property-based tests of ``parse_request`` (contract §3).

Three families of bodies are thrown at the validator: arbitrary JSON values,
arbitrary bytes and text, and near misses (a valid request with exactly one
thing wrong with it). Whatever comes in, the answer is a ``RiskRequest`` or an
``InvalidRequest`` whose key is ``body`` or a key of the body; nothing else
escapes and no rejection message is long enough to flood a log line.

Valid bodies are drawn together with what they mean (an independent oracle
written from the contract), so an accepted request is checked field by field and a
near miss is checked for the exact key it must be rejected for. The hand-written
table of bad bodies lives in ``tests/unit/test_request.py``; this module adds only
the rows it lacks (the 256 KB body, injection as a whole value, naive against
offset dates, lone surrogates).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

import handler
from libs.errors import InvalidRequest
from libs.helpers import constants_helper
from libs.helpers.constants_helper import load_settings
from libs.helpers.mongodb_helper import get_collection
from libs.observability import logger
from libs.processor import utc_now
from libs.request import RiskRequest, parse_request
from libs.tools.embedded_store import reset_embedded_store
from libs.tools.local.lambda_context import LocalContext
from libs.tools.synthetic import synthetic_documents
from tests.fakes.examples import examples
from tests.fakes.sqs import failed_ids, sqs_event

MESSAGE_ID = "5d1c0b6e-0d8a-4f5e-9b1a-7a0c2f3e4d5c"
NOW = datetime(2024, 11, 1, 12, 0, 0)
SETTINGS = load_settings({"MONGODB_URI": "mongomock://"})

#: Written out, not imported, so the oracle is independent of the code under test.
SIGNALS = (
    "latest_price",
    "market_cap_score",
    "liquidity_risk_score",
    "volatility_risk_score",
    "volume",
    "market_cap",
    "volatility_index",
)
KEYS = ("coin_ids", "signals", "periods", "as_of", "since", "deviation_limit", "request_id")
MAX_RANGE = timedelta(days=31)
#: A rejection is one log line's reason: it must stay short whatever the body holds.
MAX_REASON_CHARS = 400

COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def outcome(body: str | bytes) -> RiskRequest | InvalidRequest:
    """The validator's answer; any exception other than InvalidRequest fails the test."""
    try:
        return parse_request(body, message_id=MESSAGE_ID, settings=SETTINGS, now=NOW)
    except InvalidRequest as rejection:
        assert len(str(rejection)) <= MAX_REASON_CHARS, (
            f"a {len(str(rejection))}-char rejection: {str(rejection)[:200]}…"
        )
        return rejection


def names_a_key_of(rejection: InvalidRequest, decoded: Any) -> bool:
    """The rejection names ``body`` or a key the body has (a long key may be shown shortened with …)."""
    if rejection.key == "body":
        return True
    if not isinstance(decoded, dict):
        return False
    if rejection.key in decoded:
        return True
    shortened = rejection.key.endswith("…") and rejection.key[:-1]
    return bool(shortened) and any(key.startswith(shortened) and len(key) > len(rejection.key) for key in decoded)


def decoded_or_none(body: str | bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


# --------------------------------------------------------------------------- arbitrary JSON


def _json_values(floats: st.SearchStrategy[float]) -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | floats | st.text(max_size=30)
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
        max_leaves=12,
    )


json_values = _json_values(st.floats())
#: JSON values that json.dumps writes as standard JSON (no NaN or Infinity literal).
finite_json_values = _json_values(st.floats(allow_nan=False, allow_infinity=False))
#: Objects whose keys are mostly the real ones, so the per-key checks are reached, not just the unknown-key one.
json_objects = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=10), json_values, max_size=5)


@hypothesis_settings(max_examples=examples(1000), **COMMON)
@given(value=json_values | json_objects)
def test_any_json_value_is_a_request_or_a_rejection_naming_a_key_it_has(value):
    # given any JSON value as the body (NaN and ±Infinity literals included)
    body = json.dumps(value)

    # when validated
    answer = outcome(body)

    # then it is a request, or a rejection that names "body" or a key of the body
    if isinstance(answer, InvalidRequest):
        assert names_a_key_of(answer, value), (
            f"rejection names {answer.key!r}, not in {list(value)[:8] if isinstance(value, dict) else type(value).__name__}"
        )
    else:
        assert isinstance(value, dict) and set(value) <= set(KEYS)


@hypothesis_settings(max_examples=examples(700), **COMMON)
@given(body=st.binary(max_size=200) | st.text(max_size=200))
def test_any_bytes_or_text_is_a_request_or_a_rejection(body):
    # given arbitrary bytes or text as the body
    # when validated
    answer = outcome(body)

    # then nothing but InvalidRequest escapes, and the rejection names body or a key of the body
    if isinstance(answer, InvalidRequest):
        assert names_a_key_of(answer, decoded_or_none(body))


@hypothesis_settings(max_examples=examples(200), **COMMON)
@given(value=json_objects, data=st.data())
def test_json_text_with_bytes_flipped_is_a_request_or_a_rejection(value, data):
    # given a JSON object's UTF-8 text with a few bytes overwritten (truncations, stray quotes, broken UTF-8)
    raw = bytearray(json.dumps(value, ensure_ascii=False).encode("utf-8"))
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))

    # when validated
    answer = outcome(bytes(raw))

    # then the answer is still a request or a rejection naming body or a key of the body
    if isinstance(answer, InvalidRequest):
        assert names_a_key_of(answer, decoded_or_none(bytes(raw)))


# --------------------------------------------------------------------------- valid bodies with their meaning


@dataclass
class Case:
    """A body under construction and what the contract says it means."""

    body: dict[str, Any]
    expected: dict[str, Any]
    reject: str | None = None  # the key a rejection must name, when the oracle expects one
    text: str | None = None  # the JSON text, when it is not simply json.dumps(body)
    notes: list[str] = field(default_factory=list)

    def json_text(self) -> str:
        return self.text if self.text is not None else json.dumps(self.body)


def _render(instant: datetime, form: str, offset_minutes: int, end_of_day: bool) -> tuple[str, datetime]:
    """``instant`` (naive UTC) written in one ISO-8601 form, and the instant that text means."""
    if form == "date":
        day = instant.date()
        return day.isoformat(), datetime.combine(day, time.max if end_of_day else time.min)
    if form == "naive":
        return instant.isoformat(), instant
    if form == "Z":
        return instant.isoformat() + "Z", instant
    local = instant.replace(tzinfo=UTC).astimezone(timezone(timedelta(minutes=offset_minutes)))
    separator = "T" if form == "offset" else " "
    return local.isoformat(sep=separator), instant


instants = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9998, 12, 30))
forms = st.sampled_from(["date", "naive", "Z", "offset", "offset-space"])
instant_forms = st.sampled_from(["naive", "Z", "offset", "offset-space"])
offsets = st.integers(-(24 * 60 - 1), 24 * 60 - 1)
coin_id_lists = st.lists(st.text(min_size=1, max_size=256), min_size=1, max_size=12)
signal_lists = st.lists(st.sampled_from(SIGNALS), min_size=1, max_size=10)
period_lists = st.lists(st.integers(1, 365), min_size=1, max_size=8)
limits = st.integers(1, 10**6) | st.floats(min_value=5e-324, allow_infinity=False, allow_nan=False)
request_ids = st.text(max_size=128)
ranges = st.timedeltas(min_value=timedelta(0), max_value=MAX_RANGE)
key_sets = st.sets(st.sampled_from(KEYS))


@st.composite
def valid_cases(draw) -> Case:
    """A body every key of which is valid on its own, and the request the contract says it is.

    ``since`` is drawn within 31 days of ``as_of``; written as a date it can still
    fall outside the range, and the oracle then expects a rejection naming since.
    """
    body: dict[str, Any] = {}
    expected: dict[str, Any] = {
        "coin_ids": None,
        "signals": SIGNALS,
        "periods_days": (3, 7, 30),
        "as_of": NOW,
        "since": None,
        "deviation_limit": 1.5,
        "request_id": MESSAGE_ID,
    }
    present = draw(key_sets)
    if "coin_ids" in present:
        ids = draw(coin_id_lists)
        ids += ids[: draw(st.integers(0, 3))]  # repeats count once
        body["coin_ids"] = ids
        expected["coin_ids"] = tuple(dict.fromkeys(ids))
    if "signals" in present:
        names = draw(signal_lists)
        body["signals"] = names
        expected["signals"] = tuple(s for s in SIGNALS if s in names)
    if "periods" in present:
        periods = draw(period_lists)
        body["periods"] = periods
        expected["periods_days"] = tuple(sorted(set(periods)))
    if "deviation_limit" in present:
        limit = draw(limits)
        body["deviation_limit"] = limit
        expected["deviation_limit"] = float(limit)
    if "request_id" in present:
        body["request_id"] = draw(request_ids)
        expected["request_id"] = body["request_id"]
    if "as_of" in present:
        text, meant = _render(draw(instants), draw(forms), draw(offsets), end_of_day=True)
        body["as_of"] = text
        expected["as_of"] = meant
    if "since" in present:
        back = draw(ranges)
        text, meant = _render(expected["as_of"] - back, draw(forms), draw(offsets), end_of_day=False)
        body["since"] = text
        expected["since"] = meant
    case = Case(body, expected)
    since, as_of = expected["since"], expected["as_of"]
    if since is not None and (since > as_of or as_of - since > MAX_RANGE):
        case.reject = "since"
    return case


def assert_means(request: RiskRequest, expected: dict[str, Any]) -> None:
    for name, value in expected.items():
        assert getattr(request, name) == value, f"{name}: {getattr(request, name)!r} != {value!r}"
    assert type(request.deviation_limit) is float
    assert request.mode == ("latest" if expected["since"] is None else "range")


@hypothesis_settings(max_examples=examples(500), **COMMON)
@given(case=valid_cases(), layout=st.sampled_from(["compact", "indented", "ascii", "bytes"]))
def test_valid_bodies_mean_what_the_contract_says_however_they_are_laid_out(case, layout):
    # given a valid body, written compactly, indented, \u-escaped or as UTF-8 bytes
    text: str | bytes
    if layout == "compact":
        text = json.dumps(case.body, separators=(",", ":"), ensure_ascii=False)
    elif layout == "indented":
        text = json.dumps(case.body, indent=2, ensure_ascii=False)
    elif layout == "ascii":
        text = json.dumps(case.body, ensure_ascii=True)
    else:
        text = json.dumps(case.body, ensure_ascii=False).encode("utf-8")

    # when validated
    answer = outcome(text)

    # then it is the request the oracle describes (or, for a date-form range too long, a rejection naming since)
    if case.reject:
        assert isinstance(answer, InvalidRequest) and answer.key == case.reject, answer
    else:
        assert isinstance(answer, RiskRequest), answer
        assert_means(answer, case.expected)


# --------------------------------------------------------------------------- near misses: one thing wrong

#: For each key, a strategy of JSON values of a type it must not take (no coercion).
WRONG_TYPED = {
    "coin_ids": finite_json_values.filter(lambda v: not isinstance(v, list)),
    "signals": finite_json_values.filter(lambda v: not isinstance(v, list)),
    "periods": finite_json_values.filter(lambda v: not isinstance(v, list)),
    "as_of": finite_json_values.filter(lambda v: not isinstance(v, str)),
    "since": finite_json_values.filter(lambda v: not isinstance(v, str)),
    "deviation_limit": finite_json_values.filter(lambda v: isinstance(v, bool) or not isinstance(v, (int, float))),
    "request_id": finite_json_values.filter(lambda v: not isinstance(v, str)),
}

#: Entries a list key must not hold (wrong type or out of range), one at a time.
BAD_ENTRIES = {
    "coin_ids": st.sampled_from([0, 1.5, True, None, "", "x" * 257, ["bitcoin"], {"$ne": None}, {"$regex": ".*"}]),
    "signals": st.sampled_from(["price", "Volume", "volume ", "", 1, None, ["volume"], {"$in": ["volume"]}]),
    "periods": st.sampled_from([0, 366, -1, 10**18, 3.0, 1.5, "3", True, False, None, [3], {"$gt": 0}]),
}

#: Single values on either side of a bound: (key, JSON literal, accepted?).
BOUNDARIES = [
    ("periods", "[1]", True),
    ("periods", "[0]", False),
    ("periods", "[365]", True),
    ("periods", "[366]", False),
    ("periods", "[1e0]", False),
    ("periods", "[-0]", False),
    ("deviation_limit", "5e-324", True),
    ("deviation_limit", "0", False),
    ("deviation_limit", "-0.0", False),
    ("deviation_limit", "-5e-324", False),
    ("deviation_limit", "1.7976931348623157e308", True),
    ("deviation_limit", "1e309", False),
    ("deviation_limit", "1" + "0" * 400, False),
    ("deviation_limit", "-1" + "0" * 300, False),
    ("deviation_limit", "1e-400", False),
    ("request_id", json.dumps("r" * 128), True),
    ("request_id", json.dumps("r" * 129), False),
    ("request_id", '""', True),
    ("coin_ids", json.dumps(["c" * 256]), True),
    ("coin_ids", json.dumps(["c" * 257]), False),
    ("coin_ids", json.dumps([""]), False),
    ("coin_ids", "[]", False),
    ("coin_ids", json.dumps([f"c{i}" for i in range(5000)]), True),
    ("coin_ids", json.dumps([f"c{i}" for i in range(5001)]), False),
    ("coin_ids", json.dumps([f"c{i}" for i in range(5000)] + ["c0"]), True),
    ("signals", "[]", False),
    ("periods", "[]", False),
    ("as_of", '"1970-01-01T00:00:00Z"', True),
    ("as_of", '"1969-12-31T23:59:59.999999Z"', False),
    ("as_of", '"1970-01-01"', True),
    ("as_of", '"1969-12-31"', False),
    ("as_of", '"1970-01-01T00:59:59+01:00"', False),
    ("as_of", '"9999-12-31T23:59:59.999999"', True),
    ("as_of", '"2024-11-01T00:00:00+23:59"', True),
    ("as_of", '"2024-11-01T00:00:00+24:00"', False),
    ("as_of", '"2024-11-01T00:00:00-24:00"', False),
]


NEAR_MISS_KINDS = st.sampled_from(
    ["wrong type", "bad entry", "boundary", "unknown key", "duplicate key", "lone surrogate", "range"]
)
ANY_KEY = st.sampled_from(KEYS)
BAD_ENTRY_KEYS = st.sampled_from(sorted(BAD_ENTRIES))
BOUNDARY_ROWS = st.sampled_from(BOUNDARIES)
UNKNOWN_KEYS = st.text(min_size=1, max_size=100).filter(lambda k: k not in KEYS)
SURROGATES = st.sampled_from(["\\ud800", "\\udbff", "\\udc00", "\\udfff"])
SURROGATE_KEYS = st.sampled_from(["coin_ids", "request_id"])


def _with_literal(body: dict[str, Any], key: str, literal: str) -> str:
    """The JSON text of ``body`` with ``key`` set to a raw JSON literal (kept exactly as written)."""
    rest = json.dumps({k: v for k, v in body.items() if k != key})
    return "{" + f"{json.dumps(key)}: {literal}" + (", " + rest[1:] if rest != "{}" else "}")


@st.composite
def near_misses(draw) -> Case:
    """A valid body with exactly one thing wrong, and the key the rejection must name."""
    case = draw(valid_cases())
    assume(case.reject is None)
    kind = draw(NEAR_MISS_KINDS)
    case.notes.append(kind)
    if kind == "wrong type":
        key = draw(ANY_KEY)
        case.body[key] = draw(WRONG_TYPED[key])
        case.reject = key
    elif kind == "bad entry":
        key = draw(BAD_ENTRY_KEYS)
        entries = list(case.body.get(key, [{"coin_ids": "bitcoin", "signals": "volume", "periods": 7}[key]]))
        entries.insert(draw(st.integers(0, len(entries))), draw(BAD_ENTRIES[key]))
        case.body[key] = entries
        case.reject = key
    elif kind == "boundary":
        key, literal, accepted = draw(BOUNDARY_ROWS)
        if key == "as_of":  # so that a changed as_of cannot make since the key at fault
            case.body.pop("since", None)
        case.text = _with_literal(case.body, key, literal)
        case.reject = "accept" if accepted else key
    elif kind == "unknown key":
        unknown = draw(UNKNOWN_KEYS)
        case.body[unknown] = draw(finite_json_values)
        case.reject = unknown
    elif kind == "duplicate key":
        key = draw(ANY_KEY)
        repeated = f"{json.dumps(key)}: {json.dumps(draw(finite_json_values))}, "
        text = _with_literal(case.body, key, json.dumps(case.body.get(key)))
        case.text = "{" + repeated + text[1:]  # the key now appears twice
        case.reject = "body"
    elif kind == "lone surrogate":
        key = draw(SURROGATE_KEYS)
        surrogate = draw(SURROGATES)
        literal = f'["bit{surrogate}coin"]' if key == "coin_ids" else f'"req{surrogate}"'
        case.text = _with_literal(case.body, key, literal)
        case.reject = key
    else:  # range: since just after as_of, or one microsecond too far before it, in mixed forms
        as_of = datetime(2024, 10, 15, 6, 30)
        if draw(st.booleans()):
            since = as_of - MAX_RANGE - timedelta(microseconds=1)
        else:
            since = as_of + timedelta(microseconds=1)
        case.body["as_of"], _ = _render(as_of, draw(instant_forms), draw(offsets), True)
        case.body["since"], _ = _render(since, draw(instant_forms), draw(offsets), False)
        case.reject = "since"
    return case


@hypothesis_settings(max_examples=examples(1000), **COMMON)
@given(case=near_misses())
def test_a_near_miss_is_rejected_naming_exactly_the_key_at_fault(case):
    # given a valid request with one thing wrong (a wrong type, a bad entry, a value just past a
    # bound, an unknown or repeated key, a lone surrogate, a range one microsecond off)
    text = case.json_text()

    # when validated
    answer = outcome(text)

    # then it is rejected naming the key at fault (a boundary on the right side is accepted)
    if case.reject == "accept":
        assert isinstance(answer, RiskRequest), f"{case.notes}: {answer}"
        return
    assert isinstance(answer, InvalidRequest), f"{case.notes}: accepted {text[:300]}"
    if case.notes == ["unknown key"] and len(case.reject) > 64:
        assert answer.key.endswith("…") and case.reject.startswith(answer.key[:-1]), (case.notes, answer)
    else:
        assert answer.key == case.reject, f"{case.notes}: named {answer.key!r}, expected {case.reject!r}: {answer}"
    assert names_a_key_of(answer, json.loads(text) if case.reject != "body" else None)


@hypothesis_settings(max_examples=examples(300), **COMMON)
@given(
    as_of=instants,
    since_back=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=40)),
    as_of_offset=offsets,
    since_offset=offsets,
    as_of_form=forms,
    since_form=forms,
)
def test_naive_and_offset_dates_are_compared_as_utc_instants(
    as_of, since_back, as_of_offset, since_offset, as_of_form, since_form
):
    # given as_of and since written in any mix of naive (UTC), Z, ±HH:MM offset and date forms
    as_of_text, as_of_meant = _render(as_of, as_of_form, as_of_offset, end_of_day=True)
    since_text, since_meant = _render(as_of - since_back, since_form, since_offset, end_of_day=False)

    # when validated
    answer = outcome(json.dumps({"as_of": as_of_text, "since": since_text}))

    # then both are read as UTC instants, and the range rules are applied to those instants
    if since_meant > as_of_meant or as_of_meant - since_meant > MAX_RANGE:
        assert isinstance(answer, InvalidRequest) and answer.key == "since", (as_of_text, since_text, answer)
    else:
        assert isinstance(answer, RiskRequest), (as_of_text, since_text, answer)
        assert (answer.as_of, answer.since) == (as_of_meant, since_meant)
        assert answer.as_of.tzinfo is None and answer.since.tzinfo is None


# --------------------------------------------------------------------------- rows the table in test_request.py lacks

QUARTER_MB = 256 * 1024
BIG_COIN_IDS = [f"coin-{i:06d}-" + "x" * 40 for i in range(5000)]

EXTRA_BAD_BODIES = [
    ("256 KB request_id", json.dumps({"request_id": "r" * QUARTER_MB}), "request_id"),
    ("256 KB as_of", json.dumps({"as_of": "2024-11-01" * (QUARTER_MB // 10)}), "as_of"),
    ("256 KB unknown key", json.dumps({"k" * QUARTER_MB: 1}), "k" * 63 + "…"),
    ("256 KB of whitespace", " " * QUARTER_MB, "body"),
    ("256 KB coin_ids with one empty id last", json.dumps({"coin_ids": BIG_COIN_IDS + [""]}), "coin_ids"),
    ("256 KB periods with one 366", json.dumps({"periods": [7] * (QUARTER_MB // 3) + [366]}), "periods"),
    ("256 KB nested arrays", "[" * (QUARTER_MB // 2) + "]" * (QUARTER_MB // 2), "body"),
    ("whole body an operator", json.dumps({"$ne": None}), "$ne"),
    ("coin_ids a $regex operator", json.dumps({"coin_ids": {"$regex": ".*"}}), "coin_ids"),
    ("coin_ids a $where operator", json.dumps({"coin_ids": {"$where": "sleep(100)"}}), "coin_ids"),
    ("signals a $exists operator", json.dumps({"signals": {"$exists": True}}), "signals"),
    (
        "naive since after an offset as_of",
        json.dumps({"as_of": "2024-10-01T10:00:00+02:00", "since": "2024-10-01T09:00:00"}),
        "since",
    ),
    (
        "Z since after a naive as_of",
        json.dumps({"as_of": "2024-10-01T08:00:00", "since": "2024-10-01T08:00:00.001Z"}),
        "since",
    ),
    (
        "offset stretches the range past 31 days",
        json.dumps({"as_of": "2024-11-01T00:00:00-01:00", "since": "2024-10-01T00:00:00Z"}),
        "since",
    ),
    ("as_of a date with Z", json.dumps({"as_of": "2024-10-01Z"}), "as_of"),
    ("as_of offset of 24 hours", json.dumps({"as_of": "2024-10-01T00:00:00+24:00"}), "as_of"),
    ("as_of date only with offset", json.dumps({"as_of": "2024-10-01+02:00"}), "as_of"),
    ("coin_ids lone surrogate", '{"coin_ids": ["bit\\ud800coin"]}', "coin_ids"),
    ("request_id lone surrogate", '{"request_id": "\\udfff"}', "request_id"),
    ("key with a lone surrogate", '{"coin_ids\\ud800": ["bitcoin"]}', "body"),
    ("periods a 300-digit integer", json.dumps({"periods": [10**300]}), "periods"),
    ("deviation_limit a 300-digit negative", '{"deviation_limit": -1' + "0" * 300 + "}", "deviation_limit"),
]


@pytest.mark.parametrize(
    ("body", "key"), [row[1:] for row in EXTRA_BAD_BODIES], ids=[row[0] for row in EXTRA_BAD_BODIES]
)
def test_more_bad_bodies_are_rejected_naming_the_key_in_a_short_reason(body, key):
    # given a bad body the table in test_request.py does not have (up to SQS's 256 KB limit)
    # when validated
    answer = outcome(body)

    # then it is rejected naming the key, and the reason stays short (outcome() checks the length)
    assert isinstance(answer, InvalidRequest), f"accepted: {answer}"
    assert answer.key == key, f"named {answer.key!r}: {str(answer)[:200]}"


def test_a_valid_256_kb_body_is_accepted():
    # given a valid body as large as SQS allows: 5,000 coin ids of about 50 characters
    body = json.dumps({"coin_ids": BIG_COIN_IDS})
    assert len(body.encode()) >= QUARTER_MB

    # when / then it is accepted with every coin
    answer = outcome(body)
    assert isinstance(answer, RiskRequest) and len(answer.coin_ids) == 5000


def test_nesting_at_and_around_the_recursion_limit_never_escapes_as_another_error():
    # given a key whose value is nested a little less, exactly as, and more deeply than json can take
    # (the limit depends on how deep the caller's stack already is, so every depth near it is tried)
    for depth in range(800, 1200):
        body = '{"coin_ids": ' + "[" * depth + "]" * depth + "}"

        # when validated / then the answer is a rejection (never a RecursionError from a later step)
        answer = outcome(body)
        assert isinstance(answer, InvalidRequest) and answer.key in ("coin_ids", "body"), (depth, answer)


# --------------------------------------------------------------------------- through the handler


@pytest.fixture(scope="module")
def scores():
    """The embedded store seeded with three coins whose newest observations are recent enough to judge."""
    reset_embedded_store()
    constants_helper.reset_settings()
    collection = get_collection()
    documents, _ = synthetic_documents(coins=3, days=8, per_day=4, end=utc_now() - timedelta(minutes=5), seed=17)
    collection.insert_many(documents)
    yield collection
    reset_embedded_store()


def _snapshot(collection) -> list[dict[str, Any]]:
    return sorted(collection.find({}), key=lambda doc: str(doc["_id"]))


@contextmanager
def utf8_log() -> Iterator[tuple[io.BytesIO, list[str]]]:
    """Route the service's log lines to a strict UTF-8 byte stream, as Lambda's stdout is.

    Returns the bytes written and the messages of any log line that could not be
    written (the logging module swallows those, so they must be caught here).
    """
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", write_through=True)
    lost: list[str] = []
    handler_ = logger.registered_handler
    previous = handler_.setStream(stream)
    original_handle_error = handler_.handleError
    handler_.handleError = lambda record: lost.append(record.getMessage())
    try:
        yield raw, lost
    finally:
        handler_.handleError = original_handle_error
        handler_.setStream(previous)
        stream.detach()  # so that collecting the wrapper does not close the bytes


handler_bodies = st.one_of(
    near_misses().map(Case.json_text),
    valid_cases().map(Case.json_text),
    json_objects.map(json.dumps),
    st.text(max_size=100),
)


@hypothesis_settings(
    max_examples=examples(150),
    deadline=None,
    # the store fixture is module-scoped on purpose: every example restores what it changed
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(body=handler_bodies)
def test_through_the_handler_a_rejected_message_writes_nothing_and_is_logged_naming_the_key(scores, body):
    # given the seeded store and one SQS message with any body (near misses, valid bodies, junk)
    before = _snapshot(scores)

    # when the handler runs it
    with utf8_log() as (raw, lost):
        response = handler.handler(sqs_event(body), LocalContext())
    lines = [json.loads(line) for line in raw.getvalue().decode("utf-8").split("\n") if line.startswith("{")]

    # then every log line could be written as UTF-8, and a rejected message changed nothing in the store
    assert lost == [], f"log lines lost: {lost}"
    if failed_ids(response) == ["msg-0"]:
        rejected = [line for line in lines if line["message"] == "message rejected"]
        assert len(rejected) == 1 and rejected[0]["message_id"] == "msg-0", lines
        assert rejected[0]["key"] in rejected[0]["reason"]
        assert _snapshot(scores) == before
    else:
        assert response == {"batchItemFailures": []}
        scores.delete_many({})
        scores.insert_many(before)


def test_the_handler_property_is_not_vacuous(scores):
    # given the same store: a valid message does write (so "nothing written" above means something)
    before = _snapshot(scores)
    assert handler.handler(sqs_event({}), LocalContext()) == {"batchItemFailures": []}
    assert _snapshot(scores) != before
    assert scores.count_documents({"anomalies": {"$exists": True}}) == 3
    scores.delete_many({})
    scores.insert_many(before)
