"""Configuration: the environment into one validated, typed Settings object (contract §7).

Environments are plain dicts passed to ``load_settings``; only the
``get_settings`` tests touch ``os.environ`` (through monkeypatch).
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from urllib.parse import parse_qs, quote, unquote_plus, urlsplit

import pytest
from pymongo.uri_parser import parse_uri

from libs.errors import ConfigError
from libs.helpers import constants_helper
from libs.helpers.constants_helper import build_atlas_uri, get_settings, load_settings, reset_settings

EMBEDDED = {"MONGODB_URI": "mongomock://"}

HOST = "cluster0.abcde.mongodb.net"
USER = "svc@risk"
PASSWORD = "p@ss/w:rd%?# x"
API_KEY = "dapi-KEY-0123456789abcdef-secret"
URI_PASSWORD = "uri-pw-7f3a9c"
URI_WITH_CREDENTIALS = f"mongodb+srv://reader:{URI_PASSWORD}@{HOST}/?retryWrites=true"

ATLAS = {
    "MONGODB_RSKYCLUSTER_HOST": HOST,
    "MONGODB_RSKYCLUSTER_DATABASE_USER_NAME": USER,
    "MONGODB_RSKYCLUSTER_DATABASE_USER_PASSWORD": PASSWORD,
    "MONGODB_RSKYCLUSTER_DATABASE": "rskycluster",
    "MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION": "onchain_scores",
}

DATA_API = {
    **ATLAS,
    "MONGODB_READ_BACKEND": "data_api",
    "MONGODB_RSKYCLUSTER_REGION": "eu-west-1",
    "MONGODB_RSKYCLUSTER_DATA_API_APP_ID": "data-abcde",
    "MONGODB_RSKYCLUSTER_DATA_API_KEY": API_KEY,
    "MONGODB_RSKYCLUSTER_DATA_SOURCE": "RskyCluster",
}

#: Every form in which a secret of these environments could leak.
SECRETS = (PASSWORD, quote(PASSWORD, safe=""), "p@ss", "w:rd", API_KEY, URI_PASSWORD)


def config_error(env: dict[str, str], variable: str) -> ConfigError:
    """Assert that ``env`` is refused naming ``variable``, and return the error."""
    with pytest.raises(ConfigError) as raised:
        load_settings(env)
    assert raised.value.variable == variable, f"refused for {raised.value.variable!r}: {raised.value}"
    assert variable in str(raised.value)
    return raised.value


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"secret {secret!r} leaked into {text!r}"


# --------------------------------------------------------------------------- defaults


def test_embedded_store_defaults():
    # given only MONGODB_URI=mongomock://
    # when the settings are loaded
    settings = load_settings(EMBEDDED)

    # then every value has the default of contract §3 and §7
    assert settings.mongodb_uri == "mongomock://"
    assert settings.embedded is True
    assert settings.database == "risk"
    assert settings.collection == "coingecko_onchain_scores"
    assert settings.read_backend == "driver"
    assert settings.deviation_limit == 1.5
    assert settings.periods_days == (3, 7, 30)
    assert settings.min_observations == 4
    assert settings.latest_lookback_hours == 24
    assert settings.max_range_days == 31
    assert settings.time_margin_ms == 15_000
    assert settings.alert_topic_arn == "" and settings.alerts_enabled is False
    assert settings.alert_max_per_message == 50
    assert settings.severity_relative_floor == 0.01
    assert dict(settings.severity_absolute_floors) == {
        "volatility_index": 2.0,
        "market_cap_score": 1.0,
        "liquidity_risk_score": 1.0,
        "volatility_risk_score": 1.0,
    }
    assert settings.alert_min_severity == 3.0
    assert settings.alert_escalation_factor == 2.0
    assert settings.alert_memory_hours == 24.0
    assert settings.data_api_url is None and settings.data_api_key is None and settings.data_source is None


def test_embedded_store_takes_a_named_database_and_collection():
    # given mongomock with an explicit database and collection
    env = {
        **EMBEDDED,
        "MONGODB_RSKYCLUSTER_DATABASE": "db1",
        "MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION": "c1",
    }

    # when loaded
    settings = load_settings(env)

    # then they are used
    assert (settings.database, settings.collection) == ("db1", "c1")


def test_every_default_can_be_overridden():
    # given a value for every tunable
    env = {
        **EMBEDDED,
        "QUANTILE_DEVIATION_LIMIT": "3",
        "ANOMALY_PERIODS": " 30, 1 ,365,1 ",
        "ANOMALY_MIN_OBSERVATIONS": "10",
        "ANOMALY_LATEST_LOOKBACK_HOURS": "6",
        "ANOMALY_MAX_RANGE_DAYS": "7",
        "ANOMALY_TIME_MARGIN_MS": "0",
        "ALERT_TOPIC_ARN": " arn:aws:sns:eu-west-1:123456789012:risk-alerts ",
        "ALERT_MIN_SEVERITY": "0.5",
        "ALERT_MAX_PER_MESSAGE": "10",
        "ALERT_ESCALATION_FACTOR": "1.5e0",
        "ALERT_MEMORY_HOURS": "0",
        "SEVERITY_RELATIVE_FLOOR": "0",
        "SEVERITY_ABSOLUTE_FLOORS": " volatility_index = 0.5 ,liquidity_risk_score=3",
    }

    # when loaded
    settings = load_settings(env)

    # then each is taken, periods sorted and unique
    assert settings.deviation_limit == 3.0
    assert settings.periods_days == (1, 30, 365)
    assert settings.min_observations == 10
    assert settings.latest_lookback_hours == 6
    assert settings.max_range_days == 7
    assert settings.time_margin_ms == 0
    assert settings.alert_topic_arn == "arn:aws:sns:eu-west-1:123456789012:risk-alerts"
    assert settings.alerts_enabled is True
    assert settings.alert_min_severity == 0.5
    assert settings.alert_max_per_message == 10
    assert settings.alert_escalation_factor == 1.5 and settings.alert_memory_hours == 0.0
    assert settings.severity_relative_floor == 0.0
    assert settings.severity_absolute_floors == (("volatility_index", 0.5), ("liquidity_risk_score", 3.0))
    # the scale and rules the model reads are built from exactly these
    assert settings.severity_scale.floor_of("market_cap_score") == 0.0
    assert settings.raise_rules.lookback_hours == 6 and settings.raise_rules.min_severity == 0.5


@pytest.mark.parametrize(
    "variable",
    [
        "QUANTILE_DEVIATION_LIMIT",
        "ANOMALY_PERIODS",
        "ANOMALY_MIN_OBSERVATIONS",
        "ANOMALY_LATEST_LOOKBACK_HOURS",
        "ANOMALY_MAX_RANGE_DAYS",
        "ANOMALY_TIME_MARGIN_MS",
        "MONGODB_READ_BACKEND",
        "ALERT_TOPIC_ARN",
        "ALERT_MIN_SEVERITY",
        "ALERT_MAX_PER_MESSAGE",
        "ALERT_ESCALATION_FACTOR",
        "ALERT_MEMORY_HOURS",
        "SEVERITY_RELATIVE_FLOOR",
        "SEVERITY_ABSOLUTE_FLOORS",
    ],
)
def test_an_empty_variable_means_its_default(variable):
    # given a variable set to the empty string (as serverless.yml renders an unset parameter)
    # when loaded
    settings = load_settings({**EMBEDDED, variable: ""})

    # then it is the default
    assert settings == load_settings(EMBEDDED)


def test_settings_are_immutable():
    settings = load_settings(EMBEDDED)
    with pytest.raises(FrozenInstanceError):
        settings.deviation_limit = 3.0  # type: ignore[misc]


# --------------------------------------------------------------------------- the connection


def test_a_real_mongodb_uri_requires_the_database():
    # given a non-embedded URI and no database
    env = {"MONGODB_URI": URI_WITH_CREDENTIALS, "MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION": "c"}

    # when / then loading fails naming the database variable, without the URI's password
    error = config_error(env, "MONGODB_RSKYCLUSTER_DATABASE")
    assert_no_secret(str(error))


def test_a_real_mongodb_uri_requires_the_collection():
    # given a non-embedded URI and no collection
    env = {"MONGODB_URI": URI_WITH_CREDENTIALS, "MONGODB_RSKYCLUSTER_DATABASE": "d"}

    # when / then loading fails naming the collection variable
    error = config_error(env, "MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION")
    assert_no_secret(str(error))


def test_a_real_mongodb_uri_is_taken_verbatim():
    # given a full connection string with database and collection
    env = {
        "MONGODB_URI": URI_WITH_CREDENTIALS,
        "MONGODB_RSKYCLUSTER_DATABASE": "d",
        "MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION": "c",
    }

    # when loaded
    settings = load_settings(env)

    # then the URI is used as given and it is not the embedded store
    assert settings.mongodb_uri == URI_WITH_CREDENTIALS
    assert settings.embedded is False


def test_a_mongodb_uri_without_a_scheme_is_refused_without_echoing_it():
    # given a MONGODB_URI that is really a password pasted into the wrong variable
    error = config_error({"MONGODB_URI": URI_PASSWORD}, "MONGODB_URI")

    # then the error does not repeat it
    assert_no_secret(str(error))


def test_host_user_and_password_build_an_escaped_srv_uri():
    # given the Atlas host and credentials full of URI-reserved characters
    # when loaded
    settings = load_settings(ATLAS)
    uri = settings.mongodb_uri

    # then the URI is mongodb+srv:// on that host, TLS stated, credentials escaped
    parts = urlsplit(uri)
    assert parts.scheme == "mongodb+srv"
    assert parts.hostname == HOST
    assert parts.port is None  # an SRV URI must not carry a port
    assert unquote_plus(parts.username) == USER
    assert unquote_plus(parts.password) == PASSWORD
    assert parse_qs(parts.query).get("tls") == ["true"]
    userinfo = uri[len("mongodb+srv://") : uri.rindex("@")]
    assert userinfo.count(":") == 1 and "@" not in userinfo and "/" not in userinfo and "?" not in userinfo


def test_the_built_uri_round_trips_through_pymongo():
    # given the URI built from the Atlas variables
    uri = load_settings(ATLAS).mongodb_uri

    # when pymongo parses it (as mongodb:// so that no SRV DNS lookup happens)
    parsed = parse_uri(uri.replace("mongodb+srv://", "mongodb://", 1))

    # then pymongo reads back exactly the user, password, host and TLS
    assert parsed["username"] == USER
    assert parsed["password"] == PASSWORD
    assert parsed["nodelist"] == [(HOST, 27017)]
    assert parsed["options"]["tls"] is True


@pytest.mark.parametrize(
    ("user", "password"),
    [("plain", "plain"), ("a b", "c d"), ("ü@x", "%2F already-escaped?"), ("u+v", "+=&;,")],
)
def test_build_atlas_uri_round_trips_any_credentials(user, password):
    # given credentials with spaces, plus signs, percent signs and non-ASCII
    uri = build_atlas_uri(HOST, user, password)

    # when parsed back by pymongo
    parsed = parse_uri(uri.replace("mongodb+srv://", "mongodb://", 1))

    # then they are unchanged
    assert (parsed["username"], parsed["password"]) == (user, password)


@pytest.mark.parametrize(
    "missing",
    [
        "MONGODB_RSKYCLUSTER_HOST",
        "MONGODB_RSKYCLUSTER_DATABASE_USER_NAME",
        "MONGODB_RSKYCLUSTER_DATABASE_USER_PASSWORD",
    ],
)
@pytest.mark.parametrize("how", ["absent", "empty"])
def test_each_missing_connection_part_is_named(missing, how):
    # given no MONGODB_URI and the Atlas variables with one absent or empty
    env = {name: value for name, value in ATLAS.items() if name != missing}
    if how == "empty":
        env[missing] = ""

    # when / then loading fails naming that variable, and no secret is in the message
    error = config_error(env, missing)
    assert_no_secret(str(error))


def test_nothing_at_all_names_the_host():
    config_error({}, "MONGODB_RSKYCLUSTER_HOST")


@pytest.mark.parametrize(
    "host", [f"admin:{URI_PASSWORD}@{HOST}", f"mongodb+srv://{HOST}", f"{HOST}/db", f"{HOST}?tls=true"]
)
def test_a_host_that_is_not_a_bare_host_name_is_refused_without_echoing_it(host):
    # given a whole URI (maybe with credentials) in the host variable
    env = {**ATLAS, "MONGODB_RSKYCLUSTER_HOST": host}

    # when / then it is refused naming the variable, without repeating it
    error = config_error(env, "MONGODB_RSKYCLUSTER_HOST")
    assert_no_secret(str(error))


def test_mongodb_uri_wins_over_the_host_variables():
    # given both a MONGODB_URI and the Atlas variables
    settings = load_settings({**ATLAS, "MONGODB_URI": "mongomock://"})

    # then the URI is used
    assert settings.mongodb_uri == "mongomock://"
    assert settings.embedded is True
    assert (settings.database, settings.collection) == ("rskycluster", "onchain_scores")


# --------------------------------------------------------------------------- malformed numbers

MALFORMED = [
    ("QUANTILE_DEVIATION_LIMIT", "abc"),
    ("QUANTILE_DEVIATION_LIMIT", "0"),
    ("QUANTILE_DEVIATION_LIMIT", "-1"),
    ("QUANTILE_DEVIATION_LIMIT", "inf"),
    ("QUANTILE_DEVIATION_LIMIT", "-inf"),
    ("QUANTILE_DEVIATION_LIMIT", "nan"),
    ("QUANTILE_DEVIATION_LIMIT", "1.5.0"),
    ("ANOMALY_PERIODS", "3,x"),
    ("ANOMALY_PERIODS", "0"),
    ("ANOMALY_PERIODS", "400"),
    ("ANOMALY_PERIODS", "366"),
    ("ANOMALY_PERIODS", "-3"),
    ("ANOMALY_PERIODS", "3.5"),
    ("ANOMALY_PERIODS", "3,,7"),
    ("ANOMALY_PERIODS", "3;7"),
    ("ANOMALY_PERIODS", "\u00b2"),  # superscript two: str.isdigit() but not a number int() reads
    ("ANOMALY_MIN_OBSERVATIONS", "0"),
    ("ANOMALY_MIN_OBSERVATIONS", "-4"),
    ("ANOMALY_MIN_OBSERVATIONS", "four"),
    ("ANOMALY_MIN_OBSERVATIONS", "4.0"),
    ("ANOMALY_LATEST_LOOKBACK_HOURS", "0"),
    ("ANOMALY_LATEST_LOOKBACK_HOURS", "24h"),
    ("ANOMALY_MAX_RANGE_DAYS", "0"),
    ("ANOMALY_MAX_RANGE_DAYS", "x"),
    ("ANOMALY_MAX_RANGE_DAYS", "3651"),
    ("ANOMALY_TIME_MARGIN_MS", "-1"),
    ("ANOMALY_TIME_MARGIN_MS", "15s"),
    ("ANOMALY_TIME_MARGIN_MS", "1e4"),
    ("MONGODB_SERVER_SELECTION_TIMEOUT_MS", "0"),
    ("MONGODB_CONNECT_TIMEOUT_MS", "abc"),
    ("MONGODB_SOCKET_TIMEOUT_MS", "-5"),
    ("MONGODB_DATA_API_TIMEOUT_MS", "ten"),
    ("MONGODB_READ_BACKEND", "postgres"),
    ("MONGODB_READ_BACKEND", "data-api"),
    ("ALERT_TOPIC_ARN", "risk-alerts"),
    ("ALERT_TOPIC_ARN", "arn:aws:sqs:us-east-1:123456789012:risk-alerts"),
    ("ALERT_TOPIC_ARN", "arn:aws:sns:us-east-1:1234:risk-alerts"),
    ("ALERT_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:risk alerts"),
    ("ALERT_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:"),
    ("ALERT_TOPIC_ARN", "https://sns.us-east-1.amazonaws.com/123456789012/risk-alerts"),
    ("ALERT_MIN_SEVERITY", "-0.5"),
    ("ALERT_MIN_SEVERITY", "0"),
    ("ALERT_MIN_SEVERITY", "1_5"),
    ("ALERT_MIN_SEVERITY", "0x10"),
    ("ALERT_MIN_SEVERITY", "nan"),
    ("ALERT_MIN_SEVERITY", "inf"),
    ("ALERT_MIN_SEVERITY", "high"),
    ("ALERT_MAX_PER_MESSAGE", "0"),
    ("ALERT_MAX_PER_MESSAGE", "-1"),
    ("ALERT_MAX_PER_MESSAGE", "5.0"),
    ("ALERT_MAX_PER_MESSAGE", "ten"),
    ("ALERT_MAX_PER_MESSAGE", "1_0"),
    ("ANOMALY_TIME_MARGIN_MS", "15_000"),
    ("QUANTILE_DEVIATION_LIMIT", "1_5"),
    ("QUANTILE_DEVIATION_LIMIT", "\u0661.5"),  # an Arabic-Indic digit: float() reads it, people do not write it
    ("ALERT_ESCALATION_FACTOR", "0"),
    ("ALERT_ESCALATION_FACTOR", "-2"),
    ("ALERT_ESCALATION_FACTOR", "inf"),
    ("ALERT_ESCALATION_FACTOR", "two"),
    ("ALERT_MEMORY_HOURS", "-1"),
    ("ALERT_MEMORY_HOURS", "24h"),
    ("ALERT_MEMORY_HOURS", "nan"),
    ("SEVERITY_RELATIVE_FLOOR", "-0.01"),
    ("SEVERITY_RELATIVE_FLOOR", "1%"),
    ("SEVERITY_RELATIVE_FLOOR", "infinity"),
    ("SEVERITY_ABSOLUTE_FLOORS", "volume=1"),  # a ratio signal: it has no absolute floor
    ("SEVERITY_ABSOLUTE_FLOORS", "colour=1"),
    ("SEVERITY_ABSOLUTE_FLOORS", "volatility_index=-1"),
    ("SEVERITY_ABSOLUTE_FLOORS", "volatility_index=nan"),
    ("SEVERITY_ABSOLUTE_FLOORS", "volatility_index=2,volatility_index=3"),
    ("SEVERITY_ABSOLUTE_FLOORS", "volatility_index"),
    ("SEVERITY_ABSOLUTE_FLOORS", "volatility_index=2,,market_cap_score=1"),
    ("SEVERITY_ABSOLUTE_FLOORS", "=2"),
    ("SEVERITY_ABSOLUTE_FLOORS", "volatility_index=2;market_cap_score=1"),
]


@pytest.mark.parametrize(("variable", "value"), MALFORMED, ids=[f"{name}={value!r}" for name, value in MALFORMED])
def test_a_malformed_value_is_refused_naming_the_variable(variable, value):
    # given an otherwise valid environment with one malformed value
    # when / then loading fails with a ConfigError naming that variable
    config_error({**EMBEDDED, variable: value}, variable)


@pytest.mark.parametrize(
    ("variable", "value", "attribute", "expected"),
    [
        ("ANOMALY_PERIODS", "1,365", "periods_days", (1, 365)),
        ("QUANTILE_DEVIATION_LIMIT", "0.01", "deviation_limit", 0.01),
        ("ANOMALY_MIN_OBSERVATIONS", "1", "min_observations", 1),
        ("ANOMALY_MAX_RANGE_DAYS", "3650", "max_range_days", 3650),
        ("ALERT_MIN_SEVERITY", "0.001", "alert_min_severity", 0.001),
        ("ALERT_MIN_SEVERITY", "3", "alert_min_severity", 3.0),
        ("ALERT_MIN_SEVERITY", "+2.5E1", "alert_min_severity", 25.0),
        ("ALERT_ESCALATION_FACTOR", "0.5", "alert_escalation_factor", 0.5),
        ("ALERT_MEMORY_HOURS", "1.5", "alert_memory_hours", 1.5),
        ("SEVERITY_RELATIVE_FLOOR", ".05", "severity_relative_floor", 0.05),
        ("SEVERITY_ABSOLUTE_FLOORS", "market_cap_score=0", "severity_absolute_floors", (("market_cap_score", 0.0),)),
        ("ALERT_MAX_PER_MESSAGE", "1", "alert_max_per_message", 1),
        (
            "ALERT_TOPIC_ARN",
            "arn:aws:sns:us-east-1:123456789012:alerts.fifo",
            "alert_topic_arn",
            "arn:aws:sns:us-east-1:123456789012:alerts.fifo",
        ),
        (
            "ALERT_TOPIC_ARN",
            "arn:aws-cn:sns:cn-north-1:123456789012:a_b-C",
            "alert_topic_arn",
            "arn:aws-cn:sns:cn-north-1:123456789012:a_b-C",
        ),
    ],
)
def test_bounds_are_accepted(variable, value, attribute, expected):
    settings = load_settings({**EMBEDDED, variable: value})
    assert getattr(settings, attribute) == expected


# --------------------------------------------------------------------------- the Data API backend


def test_data_api_builds_its_url_from_region_and_app_id():
    # given the data_api backend with region, app id, key and data source
    # when loaded
    settings = load_settings(DATA_API)

    # then the base URL is the Atlas Data API endpoint of that app
    assert settings.read_backend == "data_api"
    assert settings.data_api_url == "https://eu-west-1.aws.data.mongodb-api.com/app/data-abcde/endpoint/data/v1"
    assert settings.data_api_key == API_KEY
    assert settings.data_source == "RskyCluster"


def test_data_api_url_overrides_region_and_app_id():
    # given an explicit base URL (a local endpoint) and no region or app id
    env = {
        name: value
        for name, value in DATA_API.items()
        if name not in ("MONGODB_RSKYCLUSTER_REGION", "MONGODB_RSKYCLUSTER_DATA_API_APP_ID")
    }
    env["MONGODB_DATA_API_URL"] = "http://127.0.0.1:8080/app/x/endpoint/data/v1/"

    # when loaded
    settings = load_settings(env)

    # then that URL is used (without its trailing slash)
    assert settings.data_api_url == "http://127.0.0.1:8080/app/x/endpoint/data/v1"


@pytest.mark.parametrize(
    "missing",
    [
        "MONGODB_RSKYCLUSTER_DATA_API_KEY",
        "MONGODB_RSKYCLUSTER_DATA_SOURCE",
        "MONGODB_RSKYCLUSTER_REGION",
        "MONGODB_RSKYCLUSTER_DATA_API_APP_ID",
    ],
)
def test_data_api_requires_each_of_its_variables(missing):
    # given the data_api backend without one of its variables
    env = {name: value for name, value in DATA_API.items() if name != missing}

    # when / then loading fails naming it, and no secret is in the message
    error = config_error(env, missing)
    assert_no_secret(str(error))


def test_data_api_url_must_be_http():
    env = {**DATA_API, "MONGODB_DATA_API_URL": f"ftp://{API_KEY}@example.com/"}
    error = config_error(env, "MONGODB_DATA_API_URL")
    assert_no_secret(str(error))


def test_the_driver_backend_does_not_need_data_api_variables():
    # given the driver backend (the default) and no Data API variables
    settings = load_settings(ATLAS)

    # then nothing of the Data API is set
    assert settings.read_backend == "driver"
    assert settings.data_api_url is None and settings.data_api_key is None


# --------------------------------------------------------------------------- secrets


def test_no_secret_in_the_repr_or_str_of_settings():
    # given settings holding a password (in the URI) and a Data API key
    settings = load_settings(DATA_API)
    assert settings.mongodb_uri and settings.data_api_key == API_KEY  # the secrets are there...

    # when the settings are printed (as a log line or traceback would)
    # then neither secret, nor the URI holding it, appears
    for text in (repr(settings), str(settings), f"{settings}"):
        assert_no_secret(text)
        assert settings.mongodb_uri not in text
    assert "mongodb_uri" not in repr(settings) and "data_api_key" not in repr(settings)
    assert "rskycluster" in repr(settings)  # ...while the rest is still shown


def test_no_secret_in_repr_with_a_full_mongodb_uri():
    settings = load_settings(
        {
            "MONGODB_URI": URI_WITH_CREDENTIALS,
            "MONGODB_RSKYCLUSTER_DATABASE": "d",
            "MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION": "c",
        }
    )
    assert_no_secret(repr(settings))


FAILING_ENVIRONMENTS_WITH_SECRETS = [
    {**ATLAS, "MONGODB_RSKYCLUSTER_DATABASE": ""},
    {**ATLAS, "MONGODB_READ_BACKEND": "nope"},
    {**ATLAS, "QUANTILE_DEVIATION_LIMIT": "x"},
    {**ATLAS, "MONGODB_RSKYCLUSTER_HOST": f"{USER}:{PASSWORD}@{HOST}"},
    {**DATA_API, "MONGODB_RSKYCLUSTER_DATA_SOURCE": ""},
    {**DATA_API, "MONGODB_DATA_API_URL": f"{API_KEY}"},
    {"MONGODB_URI": URI_WITH_CREDENTIALS, "ANOMALY_PERIODS": "0"},
    {"MONGODB_URI": URI_PASSWORD},
]


@pytest.mark.parametrize("env", FAILING_ENVIRONMENTS_WITH_SECRETS)
def test_no_secret_in_any_config_error(env):
    # given an environment that holds secrets and is refused
    with pytest.raises(ConfigError) as raised:
        load_settings(env)

    # then the message names a variable and holds no secret
    error = raised.value
    assert error.variable in str(error)
    assert_no_secret(str(error))
    assert_no_secret(repr(error))


# --------------------------------------------------------------------------- get_settings / reset_settings


@pytest.fixture
def clean_environment(monkeypatch):
    """os.environ with only the embedded store configured; the cache forgotten before and after."""
    for name in [*DATA_API, "MONGODB_URI", "MONGODB_DATA_API_URL", "QUANTILE_DEVIATION_LIMIT", "ANOMALY_PERIODS"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MONGODB_URI", "mongomock://")
    reset_settings()
    yield monkeypatch
    reset_settings()


def test_get_settings_builds_once_and_caches(clean_environment):
    # given the process environment
    # when the settings are asked for twice, the environment changing in between
    first = get_settings()
    clean_environment.setenv("QUANTILE_DEVIATION_LIMIT", "2.5")
    second = get_settings()

    # then both calls return the same object, read at the first call (cold start)
    assert first is second
    assert second.deviation_limit == 1.5


def test_reset_settings_forgets_the_cached_object(clean_environment):
    # given cached settings
    first = get_settings()

    # when the environment changes and the cache is reset
    clean_environment.setenv("QUANTILE_DEVIATION_LIMIT", "2.5")
    reset_settings()
    second = get_settings()

    # then the next call reads the environment again
    assert second is not first
    assert second.deviation_limit == 2.5
    assert get_settings() is second


def test_get_settings_raises_a_config_error_and_caches_nothing(clean_environment):
    # given an environment without any connection
    clean_environment.delenv("MONGODB_URI")

    # when / then the settings cannot be built, naming the variable
    with pytest.raises(ConfigError) as raised:
        get_settings()
    assert raised.value.variable == "MONGODB_RSKYCLUSTER_HOST"
    assert constants_helper._settings is None

    # and once fixed, the next call succeeds
    clean_environment.setenv("MONGODB_URI", "mongomock://")
    assert get_settings().embedded is True
