"""Request validation: one SQS message body into an immutable RiskRequest (contract §3).

Pure unit tests: no store, no queue. Every rejection must name the key at
fault, both in ``exc.key`` and in the message a log line carries.
"""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError
from datetime import datetime, timedelta
from typing import Any

import pytest

from libs.errors import InvalidRequest
from libs.helpers.constants_helper import Settings, load_settings
from libs.request import RiskRequest, parse_request

MESSAGE_ID = "2e1424d4-f796-459a-8184-9c92662be6da"

#: The seven signals of contract §2, written out here (not imported) so the test is independent.
ALL_SIGNALS = (
    "latest_price",
    "market_cap_score",
    "liquidity_risk_score",
    "volatility_risk_score",
    "volume",
    "market_cap",
    "volatility_index",
)


def parse(body: Any, settings: Settings, now: datetime) -> RiskRequest:
    """Parse ``body``; a dict or list is sent as its JSON text, str and bytes as they are."""
    if not isinstance(body, (str, bytes)) and body is not None:
        body = json.dumps(body)
    return parse_request(body, message_id=MESSAGE_ID, settings=settings, now=now)


def rejection(body: Any, key: str, settings: Settings, now: datetime) -> InvalidRequest:
    """Assert that ``body`` is rejected naming ``key``, and return the error."""
    with pytest.raises(InvalidRequest) as raised:
        parse(body, settings, now)
    assert raised.value.key == key, f"rejected for {raised.value.key!r}: {raised.value}"
    assert key in str(raised.value)
    return raised.value


# --------------------------------------------------------------------------- defaults


def test_empty_object_takes_every_default(settings, now):
    # given a body with no keys
    # when it is parsed
    request = parse({}, settings, now)

    # then every key takes the default of contract §3
    assert request.coin_ids is None  # every coin
    assert request.signals == ALL_SIGNALS
    assert request.periods_days == (3, 7, 30)
    assert request.as_of == now
    assert request.since is None
    assert request.deviation_limit == 1.5
    assert isinstance(request.deviation_limit, float)
    assert request.request_id == MESSAGE_ID
    assert request.mode == "latest"


def test_periods_and_deviation_limit_defaults_come_from_settings(now):
    # given settings whose periods and k differ from the built-in defaults
    settings = load_settings(
        {"MONGODB_URI": "mongomock://", "ANOMALY_PERIODS": "14,1", "QUANTILE_DEVIATION_LIMIT": "2.5"}
    )

    # when a body without those keys is parsed
    request = parse("{}", settings, now)

    # then the request uses the configured values
    assert request.periods_days == (1, 14)
    assert request.deviation_limit == 2.5


def test_a_fully_specified_body_is_taken_as_given(settings, now):
    # given a body with every key
    body = {
        "coin_ids": ["bitcoin", "ethereum"],
        "signals": ["volume", "latest_price"],
        "periods": [7, 1],
        "as_of": "2024-10-31T06:30:00Z",
        "since": "2024-10-20T00:00:00Z",
        "deviation_limit": 3,
        "request_id": "backfill-october",
    }

    # when it is parsed
    request = parse(body, settings, now)

    # then every value is carried, normalised
    assert request.coin_ids == ("bitcoin", "ethereum")
    assert request.signals == ("latest_price", "volume")
    assert request.periods_days == (1, 7)
    assert request.as_of == datetime(2024, 10, 31, 6, 30)
    assert request.since == datetime(2024, 10, 20)
    assert request.deviation_limit == 3.0 and isinstance(request.deviation_limit, float)
    assert request.request_id == "backfill-october"
    assert request.mode == "range"


# --------------------------------------------------------------------------- the rejection table

FIVE_THOUSAND_AND_ONE = [f"coin-{i}" for i in range(5001)]

BAD_BODIES = [
    # the body itself
    ("body not JSON", "not json", "body"),
    ("body empty string", "", "body"),
    ("body whitespace only", "   ", "body"),
    ("body truncated JSON", '{"coin_ids": ["bitcoin"]', "body"),
    ("body JSON array", "[]", "body"),
    ("body JSON array of object", '[{"coin_ids": ["bitcoin"]}]', "body"),
    ("body JSON string", '"coin_ids"', "body"),
    ("body JSON number", "42", "body"),
    ("body JSON null", "null", "body"),
    ("body JSON true", "true", "body"),
    ("body NaN literal", '{"deviation_limit": NaN}', "body"),
    ("body Infinity literal", '{"deviation_limit": Infinity}', "body"),
    ("body -Infinity literal", '{"deviation_limit": -Infinity}', "body"),
    ("body duplicate key", '{"as_of": "2024-10-01", "as_of": "2024-10-02"}', "body"),
    ("body duplicate key nested", '{"coin_ids": [{"a": 1, "a": 2}]}', "body"),
    ("body bytes not UTF-8", b'{"coin_ids": ["\xff\xfe"]}', "body"),
    ("body latin-1 bytes", '{"coin_ids": ["münze"]}'.encode("latin-1"), "body"),
    ("body too deeply nested", "[" * 100_000 + "]" * 100_000, "body"),
    # unknown keys
    ("unknown key", {"coins": ["bitcoin"]}, "coins"),
    ("unknown key next to valid ones", {"coin_ids": ["bitcoin"], "extra": 1}, "extra"),
    ("unknown operator key", {"$where": "sleep(1000)"}, "$where"),
    ("key with other case", {"Coin_IDs": ["bitcoin"]}, "Coin_IDs"),
    # coin_ids
    ("coin_ids a string", {"coin_ids": "bitcoin"}, "coin_ids"),
    ("coin_ids operator object", {"coin_ids": {"$ne": None}}, "coin_ids"),
    ("coin_ids null", {"coin_ids": None}, "coin_ids"),
    ("coin_ids empty list", {"coin_ids": []}, "coin_ids"),
    ("coin_ids 5001 entries", {"coin_ids": FIVE_THOUSAND_AND_ONE}, "coin_ids"),
    ("coin_ids empty string entry", {"coin_ids": ["bitcoin", ""]}, "coin_ids"),
    ("coin_ids 257-char entry", {"coin_ids": ["x" * 257]}, "coin_ids"),
    ("coin_ids number entry", {"coin_ids": [1]}, "coin_ids"),
    ("coin_ids boolean entry", {"coin_ids": [True]}, "coin_ids"),
    ("coin_ids null entry", {"coin_ids": [None]}, "coin_ids"),
    ("coin_ids operator entry", {"coin_ids": [{"$ne": None}]}, "coin_ids"),
    ("coin_ids regex operator entry", {"coin_ids": [{"$regex": ".*"}]}, "coin_ids"),
    ("coin_ids nested list entry", {"coin_ids": [["bitcoin"]]}, "coin_ids"),
    # signals
    ("signals a string", {"signals": "volume"}, "signals"),
    ("signals empty list", {"signals": []}, "signals"),
    ("signals unknown name", {"signals": ["volume", "price"]}, "signals"),
    ("signals wrong case", {"signals": ["Volume"]}, "signals"),
    ("signals number entry", {"signals": [1]}, "signals"),
    ("signals operator entry", {"signals": [{"$ne": None}]}, "signals"),
    ("signals null", {"signals": None}, "signals"),
    # periods
    ("periods 0", {"periods": [0]}, "periods"),
    ("periods 366", {"periods": [3, 366]}, "periods"),
    ("periods -1", {"periods": [-1]}, "periods"),
    ("periods true", {"periods": [True]}, "periods"),
    ("periods 3.0", {"periods": [3.0]}, "periods"),
    ("periods 1.5", {"periods": [1.5]}, "periods"),
    ("periods string 3", {"periods": ["3"]}, "periods"),
    ("periods null entry", {"periods": [None]}, "periods"),
    ("periods empty list", {"periods": []}, "periods"),
    ("periods a bare number", {"periods": 3}, "periods"),
    ("periods a string", {"periods": "3,7,30"}, "periods"),
    ("periods 3e0 literal", '{"periods": [3e0]}', "periods"),
    # as_of
    ("as_of garbage", {"as_of": "yesterday"}, "as_of"),
    ("as_of empty string", {"as_of": ""}, "as_of"),
    ("as_of epoch number", {"as_of": 1730462400}, "as_of"),
    ("as_of null", {"as_of": None}, "as_of"),
    ("as_of object", {"as_of": {"$gt": "2024-01-01"}}, "as_of"),
    ("as_of month 13", {"as_of": "2024-13-01"}, "as_of"),
    ("as_of February 30", {"as_of": "2024-02-30"}, "as_of"),
    ("as_of hour 25", {"as_of": "2024-11-01T25:00:00"}, "as_of"),
    ("as_of trailing junk", {"as_of": "2024-11-01T12:00:00Zjunk"}, "as_of"),
    ("as_of date with junk", {"as_of": "2024-11-01 and then"}, "as_of"),
    ("as_of before 1970", {"as_of": "1969-12-31T23:59:59Z"}, "as_of"),
    ("as_of date before 1970", {"as_of": "1969-12-31"}, "as_of"),
    ("as_of before 1970 via offset", {"as_of": "1970-01-01T00:30:00+01:00"}, "as_of"),
    ("as_of year 1 with offset", {"as_of": "0001-01-01T00:00:00+01:00"}, "as_of"),
    ("as_of odd separator", {"as_of": "2024-11-01x12:00:00"}, "as_of"),
    ("as_of basic with odd separator", {"as_of": "20241101x120000Z"}, "as_of"),
    ("as_of basic date with junk", {"as_of": "20241101junk"}, "as_of"),
    ("as_of mixed basic and extended date", {"as_of": "2024-1101"}, "as_of"),
    ("as_of basic February 30", {"as_of": "20240230"}, "as_of"),
    ("as_of basic hour 25", {"as_of": "20241101T250000Z"}, "as_of"),
    ("as_of basic before 1970", {"as_of": "19691231T235959Z"}, "as_of"),
    ("as_of basic with trailing junk", {"as_of": "20241101T120000Zjunk"}, "as_of"),
    # since
    ("since garbage", {"since": "last week"}, "since"),
    ("since number", {"since": 20241101}, "since"),
    ("since boolean", {"since": True}, "since"),
    ("since list", {"since": ["2024-10-01"]}, "since"),
    ("since after as_of", {"as_of": "2024-10-01T00:00:00Z", "since": "2024-10-01T00:00:01Z"}, "since"),
    ("since after default as_of", {"since": "2024-11-02"}, "since"),
    ("since too far back", {"as_of": "2024-11-01T00:00:00", "since": "2024-09-30T23:59:59.999999"}, "since"),
    ("since before 1970", {"as_of": "1970-01-05", "since": "1969-12-31"}, "since"),
    # deviation_limit
    ("deviation_limit string", {"deviation_limit": "1.5"}, "deviation_limit"),
    ("deviation_limit 0", {"deviation_limit": 0}, "deviation_limit"),
    ("deviation_limit 0.0", {"deviation_limit": 0.0}, "deviation_limit"),
    ("deviation_limit -0.0", {"deviation_limit": -0.0}, "deviation_limit"),
    ("deviation_limit negative", {"deviation_limit": -1.5}, "deviation_limit"),
    ("deviation_limit true", {"deviation_limit": True}, "deviation_limit"),
    ("deviation_limit null", {"deviation_limit": None}, "deviation_limit"),
    ("deviation_limit list", {"deviation_limit": [1.5]}, "deviation_limit"),
    ("deviation_limit overflows to inf", '{"deviation_limit": 1e400}', "deviation_limit"),
    ("deviation_limit huge integer", '{"deviation_limit": 1' + "0" * 400 + "}", "deviation_limit"),
    # request_id
    ("request_id 129 chars", {"request_id": "r" * 129}, "request_id"),
    ("request_id number", {"request_id": 123}, "request_id"),
    ("request_id null", {"request_id": None}, "request_id"),
    ("request_id list", {"request_id": ["a"]}, "request_id"),
    ("request_id object", {"request_id": {"$ne": None}}, "request_id"),
]


@pytest.mark.parametrize(("body", "key"), [row[1:] for row in BAD_BODIES], ids=[row[0] for row in BAD_BODIES])
def test_bad_bodies_are_rejected_naming_the_key(body, key, settings, now):
    # given a body that breaks contract §3
    # when it is parsed
    # then it is rejected, and the rejection names the key at fault
    rejection(body, key, settings, now)


def test_the_table_is_large_enough_and_covers_every_key():
    keys = {row[2] for row in BAD_BODIES}
    assert len(BAD_BODIES) >= 30
    assert keys >= {"body", "coin_ids", "signals", "periods", "as_of", "since", "deviation_limit", "request_id"}


WRONG_TYPES = {
    # For each key, JSON values of every type it must not take (contract §3: no coercion).
    "coin_ids": ["bitcoin", 1, 1.5, True, None, {"$ne": None}],
    "signals": ["volume", 1, 1.5, True, None, {"$in": ["volume"]}],
    "periods": ["3", 3, 3.0, True, None, {"$gt": 0}],
    "as_of": [1730462400, 1.5, True, None, ["2024-11-01"], {"$gt": "2024-11-01"}],
    "since": [1730462400, 1.5, True, None, ["2024-11-01"], {"$gt": "2024-11-01"}],
    "deviation_limit": ["1.5", "1", True, False, None, [1.5], {"$gt": 0}],
    "request_id": [1, 1.5, True, None, ["id"], {"$ne": None}],
}


@pytest.mark.parametrize(
    ("key", "value"),
    [(key, value) for key, values in WRONG_TYPES.items() for value in values],
    ids=[f"{key}={json.dumps(value)}" for key, values in WRONG_TYPES.items() for value in values],
)
def test_every_key_rejects_values_of_the_wrong_type(key, value, settings, now):
    # given an otherwise empty body whose only key has a value of the wrong JSON type
    # when / then it is rejected naming that key, with no coercion
    rejection({key: value}, key, settings, now)


def test_the_first_unknown_key_is_named_even_among_valid_ones(settings, now):
    # given a valid body with one misspelt key
    body = {"coin_ids": ["bitcoin"], "deviaton_limit": 2.0}

    # when / then the rejection names the misspelt key and lists the known ones
    error = rejection(body, "deviaton_limit", settings, now)
    assert "deviation_limit" in error.reason


def test_a_duplicate_key_rejection_names_the_repeated_key(settings, now):
    # given a JSON object that states since twice (json.loads would keep the last one silently)
    body = '{"since": "2024-10-01", "since": "2024-10-20"}'

    # when / then it is rejected as a body, and the message says which key was repeated
    error = rejection(body, "body", settings, now)
    assert "since" in str(error)


# --------------------------------------------------------------------------- lists: repeats count once


def test_coin_ids_repeats_count_once_in_first_seen_order(settings, now):
    # given coin ids with repeats
    body = {"coin_ids": ["ethereum", "bitcoin", "ethereum", "solana", "bitcoin"]}

    # when parsed
    request = parse(body, settings, now)

    # then each coin appears once, in the order it was first named
    assert request.coin_ids == ("ethereum", "bitcoin", "solana")


def test_coin_ids_bounds_are_accepted(settings, now):
    # given the largest list of the longest ids, and a single id of one character
    largest = [f"{i:0>256}" for i in range(5000)]

    # when parsed
    large = parse({"coin_ids": largest}, settings, now)
    small = parse({"coin_ids": ["x"]}, settings, now)

    # then both are accepted as given
    assert len(large.coin_ids) == 5000 and large.coin_ids[0] == largest[0]
    assert small.coin_ids == ("x",)


def test_coin_ids_limit_counts_distinct_coins(settings, now):
    # given 5,001 entries of which one repeats: 5,000 distinct coins
    entries = [f"coin-{i}" for i in range(5000)] + ["coin-0"]

    # when parsed
    request = parse({"coin_ids": entries}, settings, now)

    # then the repeat counts once and the request is within the limit
    assert len(request.coin_ids) == 5000


def test_coin_ids_that_look_like_operators_are_plain_strings(settings, now):
    # given string ids that happen to start with a dollar sign
    # when parsed
    request = parse({"coin_ids": ["$ne", '{"$gt": ""}']}, settings, now)

    # then they are kept as literal strings (the store matches them by equality)
    assert request.coin_ids == ("$ne", '{"$gt": ""}')
    assert all(type(coin) is str for coin in request.coin_ids)


def test_signals_are_returned_in_canonical_order_once_each(settings, now):
    # given signals out of order and repeated
    body = {"signals": ["volatility_index", "latest_price", "volume", "latest_price"]}

    # when parsed
    request = parse(body, settings, now)

    # then they are deduplicated and in the order of contract §2
    assert request.signals == ("latest_price", "volume", "volatility_index")


def test_periods_are_sorted_and_unique(settings, now):
    # given periods out of order and repeated, at both bounds
    body = {"periods": [30, 365, 3, 7, 3, 1, 30]}

    # when parsed
    request = parse(body, settings, now)

    # then they are sorted, each once
    assert request.periods_days == (1, 3, 7, 30, 365)
    assert all(type(period) is int for period in request.periods_days)


# --------------------------------------------------------------------------- numbers and strings


@pytest.mark.parametrize(
    ("text", "expected"), [("2", 2.0), ("1.5", 1.5), ("0.001", 0.001), ("1e-9", 1e-9), ("100", 100.0)]
)
def test_deviation_limit_accepts_any_finite_positive_json_number(text, expected, settings, now):
    # given a JSON number above 0 (integer or float)
    # when parsed
    request = parse('{"deviation_limit": ' + text + "}", settings, now)

    # then it is the float k
    assert request.deviation_limit == expected
    assert type(request.deviation_limit) is float


def test_request_id_overrides_the_message_id_up_to_128_chars(settings, now):
    # given a request id of exactly 128 characters
    request_id = "r" * 128

    # when parsed
    request = parse({"request_id": request_id}, settings, now)

    # then it is carried instead of the SQS message id
    assert request.request_id == request_id


# --------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-10-31T10:00:00Z", datetime(2024, 10, 31, 10)),
        ("2024-10-31T10:00:00+02:00", datetime(2024, 10, 31, 8)),
        ("2024-10-31T01:00:00+02:00", datetime(2024, 10, 30, 23)),
        ("2024-10-31T10:00:00-05:30", datetime(2024, 10, 31, 15, 30)),
        ("2024-10-31T10:00:00", datetime(2024, 10, 31, 10)),
        ("2024-10-31 10:00:00", datetime(2024, 10, 31, 10)),
        ("2024-10-31T10:00:00.123456Z", datetime(2024, 10, 31, 10, 0, 0, 123456)),
        ("2024-10-31", datetime(2024, 10, 31, 23, 59, 59, 999999)),
        ("1970-01-01T00:00:00Z", datetime(1970, 1, 1)),
        ("9999-12-31", datetime(9999, 12, 31, 23, 59, 59, 999999)),
        # ISO-8601 basic format, and the mixed forms datetime.fromisoformat reads
        ("20241031", datetime(2024, 10, 31, 23, 59, 59, 999999)),
        ("20241031T100000Z", datetime(2024, 10, 31, 10)),
        ("20241031T100000", datetime(2024, 10, 31, 10)),
        ("20241031T100000+0200", datetime(2024, 10, 31, 8)),
        ("20241031T100000.123456Z", datetime(2024, 10, 31, 10, 0, 0, 123456)),
        ("20241031T10:00:00Z", datetime(2024, 10, 31, 10)),
        ("20241031 1000", datetime(2024, 10, 31, 10)),
        ("2024-10-31T1000Z", datetime(2024, 10, 31, 10)),
        ("2024W444", datetime(2024, 10, 31, 23, 59, 59, 999999)),
        ("2024-W44-4T10:00:00Z", datetime(2024, 10, 31, 10)),
    ],
)
def test_as_of_is_converted_to_naive_utc(text, expected, settings, now):
    # given an as_of with an offset, without one (UTC), or a date (the end of that UTC day)
    # when parsed
    request = parse({"as_of": text}, settings, now)

    # then it is the naive UTC instant
    assert request.as_of == expected
    assert request.as_of.tzinfo is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-10-20T10:00:00Z", datetime(2024, 10, 20, 10)),
        ("2024-10-20T10:00:00+02:00", datetime(2024, 10, 20, 8)),
        ("2024-10-20T10:00:00", datetime(2024, 10, 20, 10)),
        ("2024-10-20", datetime(2024, 10, 20, 0, 0, 0, 0)),
        ("20241020", datetime(2024, 10, 20, 0, 0, 0, 0)),
        ("20241020T100000Z", datetime(2024, 10, 20, 10)),
        ("20241020T120000+0200", datetime(2024, 10, 20, 10)),
    ],
)
def test_since_is_converted_to_naive_utc_and_a_date_means_its_start(text, expected, settings, now):
    # given a since (the as_of default, now, is 2024-11-01 12:00)
    # when parsed
    request = parse({"since": text}, settings, now)

    # then it is the naive UTC instant, a date being the start of that UTC day
    assert request.since == expected
    assert request.since.tzinfo is None
    assert request.mode == "range"


def test_a_date_range_covers_both_whole_days(settings, now):
    # given a range stated as two dates
    request = parse({"since": "2024-10-30", "as_of": "2024-10-31"}, settings, now)

    # then it runs from the first instant of the first day to the last of the second
    assert request.since == datetime(2024, 10, 30, 0, 0)
    assert request.as_of == datetime(2024, 10, 31, 23, 59, 59, 999999)


def test_since_equal_to_as_of_is_accepted(settings, now):
    # given since and as_of at the same instant, one stated with an offset
    body = {"since": "2024-10-31T12:00:00+02:00", "as_of": "2024-10-31T10:00:00Z"}

    # when parsed
    request = parse(body, settings, now)

    # then the (one-instant) range is valid
    assert request.since == request.as_of == datetime(2024, 10, 31, 10)


def test_since_exactly_max_range_days_before_as_of_is_accepted(settings, now):
    # given since exactly 31 days (ANOMALY_MAX_RANGE_DAYS default) before as_of
    body = {"as_of": "2024-11-01T00:00:00Z", "since": "2024-10-01T00:00:00Z"}

    # when parsed
    request = parse(body, settings, now)

    # then it is accepted
    assert request.as_of - request.since == timedelta(days=31)


def test_since_a_microsecond_beyond_max_range_days_is_rejected(settings, now):
    # given since 31 days and one microsecond before as_of
    body = {"as_of": "2024-11-01T00:00:00.000001Z", "since": "2024-10-01T00:00:00Z"}

    # when / then it is rejected naming since, and the reason names the limit's variable
    error = rejection(body, "since", settings, now)
    assert "31" in error.reason and "ANOMALY_MAX_RANGE_DAYS" in error.reason


def test_the_range_limit_follows_settings(now):
    # given a deployment that allows two-day ranges
    settings = load_settings({"MONGODB_URI": "mongomock://", "ANOMALY_MAX_RANGE_DAYS": "2"})

    # when a two-day and a three-day range are parsed
    ok = parse({"as_of": "2024-10-03T00:00:00", "since": "2024-10-01T00:00:00"}, settings, now)

    # then the first is accepted and the second rejected naming since
    assert ok.since == datetime(2024, 10, 1)
    rejection({"as_of": "2024-10-04T00:00:00", "since": "2024-10-01T00:00:00"}, "since", settings, now)


def test_the_range_is_checked_against_the_default_as_of(settings, now):
    # given no as_of (so now, 2024-11-01 12:00) and a since 31 days before it, then 32
    accepted = parse({"since": "2024-10-01T12:00:00"}, settings, now)

    # then the 31-day range is accepted and the longer one rejected
    assert accepted.as_of == now and accepted.since == datetime(2024, 10, 1, 12)
    rejection({"since": "2024-09-30"}, "since", settings, now)


# --------------------------------------------------------------------------- bodies as bytes


def test_utf8_bytes_bodies_are_accepted(settings, now):
    # given the body as UTF-8 bytes with a non-ASCII coin id
    body = json.dumps({"coin_ids": ["münze", "ビットコイン"]}, ensure_ascii=False).encode("utf-8")

    # when parsed
    request = parse(body, settings, now)

    # then the ids are decoded text
    assert request.coin_ids == ("münze", "ビットコイン")


def test_a_body_that_is_not_text_is_rejected_naming_body(settings, now):
    # given a body that is neither str nor bytes (a caller that passed the decoded dict)
    with pytest.raises(InvalidRequest) as raised:
        parse_request({"coin_ids": ["bitcoin"]}, message_id=MESSAGE_ID, settings=settings, now=now)

    # then it is rejected naming body
    assert raised.value.key == "body" and "body" in str(raised.value)


# --------------------------------------------------------------------------- the request value


def test_risk_request_is_immutable(settings, now):
    # given a parsed request
    request = parse({"coin_ids": ["bitcoin"]}, settings, now)

    # when / then no field can be reassigned, and the collections are tuples
    for name in ("coin_ids", "signals", "periods_days", "as_of", "since", "deviation_limit", "request_id"):
        with pytest.raises(FrozenInstanceError):
            setattr(request, name, None)
    assert isinstance(request.coin_ids, tuple)
    assert isinstance(request.signals, tuple)
    assert isinstance(request.periods_days, tuple)


def test_latest_mode_judges_the_lookback_window_and_history_reaches_the_longest_period(settings, now):
    # given a latest-mode request with periods 3 and 45
    request = parse({"as_of": "2024-10-31T12:00:00Z", "periods": [45, 3]}, settings, now)

    # when its judged start and history start are asked for a 24-hour lookback
    start, inclusive = request.judged_start(24)
    history = request.history_start(24)

    # then judging starts (exclusively) 24 hours before as_of, and history 45 days before that
    assert request.mode == "latest"
    assert start == datetime(2024, 10, 30, 12) and inclusive is False
    assert history == datetime(2024, 10, 30, 12) - timedelta(days=45)


def test_range_mode_judges_from_since_and_history_reaches_the_longest_period(settings, now):
    # given a range-mode request with default periods (3, 7, 30)
    request = parse({"since": "2024-10-20", "as_of": "2024-10-31"}, settings, now)

    # when its judged start and history start are asked (the lookback does not apply)
    start, inclusive = request.judged_start(24)
    history = request.history_start(24)

    # then judging starts at since, inclusive, and history 30 days before it
    assert request.mode == "range"
    assert start == datetime(2024, 10, 20) and inclusive is True
    assert history == datetime(2024, 9, 20)


def test_with_the_alert_memory_latest_mode_history_reaches_back_that_much_more(settings, now):
    # given a latest-mode and a range-mode request with default periods (3, 7, 30)
    latest = parse({"as_of": "2024-10-31T12:00:00Z"}, settings, now)
    backfill = parse({"since": "2024-10-20", "as_of": "2024-10-31"}, settings, now)

    # when their history start is asked with a memory of 36 hours (contract §9, alerts on)
    latest_history = latest.history_start(24, memory_hours=36)
    backfill_history = backfill.history_start(24, memory_hours=36)

    # then latest mode reaches the memory further (the steps up to 36 h before a judged observation, each with
    # its own 30-day window); range mode, which publishes no alerts, does not
    assert latest_history == datetime(2024, 10, 31, 12) - timedelta(hours=24 + 36) - timedelta(days=30)
    assert backfill_history == backfill.history_start(24) == datetime(2024, 9, 20)


def test_describe_is_json_friendly_metadata(settings, now):
    # given a latest-mode request for every coin and a range-mode request for two
    everything = parse({}, settings, now)
    backfill = parse({"coin_ids": ["a", "b", "a"], "since": "2024-10-30", "request_id": "bf-1"}, settings, now)

    # when described
    described_all = everything.describe()
    described_backfill = backfill.describe()

    # then both serialise to JSON and say what the request is
    json.dumps(described_all)
    json.dumps(described_backfill)
    assert described_all["request_id"] == MESSAGE_ID
    assert described_all["mode"] == "latest"
    assert described_all["coins"] == "all"
    assert described_all["since"] is None
    assert described_all["as_of"] == "2024-11-01T12:00:00"
    assert described_all["signals"] == list(ALL_SIGNALS)
    assert described_all["periods_days"] == [3, 7, 30]
    assert described_all["deviation_limit"] == 1.5
    assert described_backfill["request_id"] == "bf-1"
    assert described_backfill["mode"] == "range"
    assert described_backfill["coins"] == 2
    assert described_backfill["since"] == "2024-10-30T00:00:00"
