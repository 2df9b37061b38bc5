"""No command prints a traceback: bad input, configuration or endpoints end in one ``error: …`` line (contract §8).

Every command of ``python -m libs.cli`` runs in its own process, as a user runs
it, over what it would meet: bad arguments, bad or missing configuration, an
unreachable store (a closed loopback port, 200 ms selection timeout),
unreadable files, an unreachable or wrong SQS endpoint (moto's server for a
queue that does not exist), an ``--out`` that cannot be written. Each must exit
2 (or 1 when part of its work failed) with exactly one line on stderr, starting
``error: `` and saying what is wrong, and no ``Traceback``.

The cases are generated from :data:`COMMANDS`: one entry per command says how it
runs when nothing is wrong and which kinds of trouble apply to it, plus its own
bad arguments. A new command is one more entry. The processes run a few at a
time so that the whole file takes seconds.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from tests.conftest import REPO

#: Placeholders in arguments: {tmp} a scratch directory, {sqs} moto's endpoint, {closed} a closed port,
#: {file} a regular file, {busy} a port something listens on.


@dataclass(frozen=True)
class Case:
    """One run of a command that must fail cleanly: its arguments, extra environment, status and error text."""

    id: str
    argv: tuple[str | bytes, ...]
    env: dict[str, str] = field(default_factory=dict)
    status: int = 2
    says: str = ""


def case(id_: str, *argv: str | bytes, env: dict[str, str] | None = None, status: int = 2, says: str = "") -> Case:
    return Case(id_, argv, env or {}, status, says)


@dataclass(frozen=True)
class Command:
    """How a command runs when nothing is wrong, which kinds of trouble apply to it, and its own bad input."""

    argv: tuple[str, ...]
    #: reads the configuration of contract §7 (a malformed variable stops it)
    reads_config: bool = True
    #: reads or writes the store (an unreachable one stops it)
    uses_store: bool = False
    #: talks to the queue given by --queue-url / --endpoint-url ({queue} / {endpoint} in ``argv``)
    uses_queue: bool = False
    cases: tuple[Case, ...] = ()


#: A store nobody answers at (a closed loopback port), with a credential that must never be shown.
UNREACHABLE_STORE = {
    "MONGODB_URI": "mongodb://svc:S3cret@127.0.0.1:{closed}/?directConnection=true",
    "MONGODB_RSKYCLUSTER_DATABASE": "risk",
    "MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION": "scores",
    "MONGODB_SERVER_SELECTION_TIMEOUT_MS": "200",
}
#: Configuration every reading command must refuse, naming the variable.
BAD_CONFIG = (
    ("uri-garbage", {"MONGODB_URI": "garbage"}, "MONGODB_URI"),
    ("periods-x", {"ANOMALY_PERIODS": "x"}, "ANOMALY_PERIODS"),
)
QUEUE = ("--queue-url", "{queue}", "--endpoint-url", "{endpoint}")
DATA_API_UNREACHABLE = {
    "MONGODB_READ_BACKEND": "data_api",
    "MONGODB_DATA_API_URL": "http://127.0.0.1:{closed}",
    "MONGODB_RSKYCLUSTER_DATA_API_KEY": "S3cret",
    "MONGODB_RSKYCLUSTER_DATA_SOURCE": "atlas",
    "MONGODB_DATA_API_TIMEOUT_MS": "200",
}

COMMANDS: dict[str, Command] = {
    "demo": Command(
        ("demo", "--coins", "1", "--days", "1", "--out-dir", "{tmp}/demo"),
        cases=(
            case("zero-coins", "demo", "--coins", "0", says="--coins: must be at least 1"),
            case("out-dir-under-a-file", "demo", "--out-dir", "{file}/demo", says="--out-dir {file}/demo: cannot"),
            case("real-store", "demo", env=UNREACHABLE_STORE, says="demo runs on the embedded store only"),
        ),
    ),
    "invoke": Command(
        ("invoke", str(REPO / "events" / "latest.json")),
        cases=(
            case("missing-event", "invoke", "{tmp}/nope.json", says="cannot read {tmp}/nope.json"),
            case("event-is-a-directory", "invoke", "{tmp}", says="cannot read {tmp}"),
            case("event-not-json", "invoke", "{file}", says="{file} is not JSON"),
            case("event-not-utf8", "invoke", "{binary}", says="{binary} is not JSON"),
            case("event-not-sqs", "invoke", "{json}", says="expected an SQS event"),
            case("bad-timeout", "invoke", "{json}", "--timeout-ms", "x", says="--timeout-ms: invalid"),
        ),
    ),
    "enqueue": Command(
        ("enqueue", *QUEUE, "--coins", "a"),
        uses_queue=True,
        cases=(
            case("store-unreachable", "enqueue", *QUEUE, env=UNREACHABLE_STORE, says="listing coins failed"),
            case("zero-per-message", "enqueue", *QUEUE, "--coins-per-message", "0", says="must be at least 1"),
            case("bad-as-of", "enqueue", *QUEUE, "--coins", "a", "--as-of", "soon", says="as_of"),
            case("nan-k", "enqueue", *QUEUE, "--coins", "a", "--deviation-limit", "nan", says="finite number"),
            case("zero-k", "enqueue", *QUEUE, "--coins", "a", "--deviation-limit", "0", says="deviation_limit"),
            case("bad-periods", "enqueue", *QUEUE, "--coins", "a", "--periods", "3,x", says="--periods"),
            case("long-coin", "enqueue", *QUEUE, "--coins", "c" * 300, says="longer than 256"),
            case("coin-not-utf8", "enqueue", *QUEUE, "--coins", b"bad\xff", says="coin_ids"),
            case("missing-coins-file", "enqueue", *QUEUE, "--coins-file", "{tmp}/no", says="cannot read --coins-file"),
            case("coins-file-dir", "enqueue", *QUEUE, "--coins-file", "{tmp}", says="cannot read --coins-file"),
            case("coins-file-binary", "enqueue", *QUEUE, "--coins-file", "{binary}", says="is not UTF-8 text"),
            case("empty-coins-file", "enqueue", *QUEUE, "--coins-file", "{empty}", says="no coins found"),
        ),
    ),
    "poll": Command(
        ("poll", *QUEUE, "--until-empty", "--wait-seconds", "0"),
        uses_queue=True,
        cases=(
            case("bad-function-timeout", "poll", *QUEUE, "--function-timeout", "abc", says="--function-timeout"),
            case("big-batch-no-window", "poll", *QUEUE, "--batch-size", "20", says="batch"),
            case("wait-too-long", "poll", *QUEUE, "--wait-seconds", "30", says="--wait-seconds"),
            case("max-seconds-nan", "poll", *QUEUE, "--max-seconds", "nan", says="--max-seconds"),
        ),
    ),
    "plot": Command(
        ("plot", "--coin", "a", "--signal", "volume", "--out", "{tmp}/a.png"),
        uses_store=True,
        cases=(
            case("unknown-coin", "plot", "--coin", "a", "--signal", "volume", "--out", "{tmp}/a.png", says="coin 'a'"),
            case("bad-signal", "plot", "--coin", "a", "--signal", "price", "--out", "{tmp}/a.png", says="--signal"),
            case(
                "zero-period",
                "plot",
                "--coin",
                "a",
                "--signal",
                "volume",
                "--period",
                "0",
                "--out",
                "x",
                says="--period",
            ),
            case("coin-not-utf8", "plot", "--coin", b"b\xff", "--signal", "volume", "--out", "x", says="not UTF-8"),
        ),
    ),
    "report": Command(
        ("report", "--out", "{tmp}/report"),
        uses_store=True,
        cases=(
            case("bad-since", "report", "--since", "last week", "--out", "{tmp}/r", says="--since"),
            case("bad-periods", "report", "--periods", "0", "--out", "{tmp}/r", says="--periods"),
            case("long-coin", "report", "--coins", "c" * 300, "--out", "{tmp}/r", says="longer than 256"),
            case("coin-not-utf8", "report", "--coins", b"b\xff", "--out", "{tmp}/r", says="not UTF-8"),
            case("coins-file-binary", "report", "--coins-file", "{binary}", "--out", "{tmp}/r", says="not UTF-8"),
            case("empty-out", "report", "--out", "", says="--out is empty"),
            case("out-under-a-file", "report", "--out", "{file}/r", says="--out {file}/r: cannot write"),
            case("out-is-a-file", "report", "--out", "{file}", says="--out {file}: cannot write"),
            case("no-store-configured", "report", "--out", "{tmp}/r", env={"MONGODB_URI": ""}, says="MONGODB_"),
            case("data-api-unconfigured", "report", "--out", "{tmp}/r", env={"MONGODB_READ_BACKEND": "data_api"}),
            case("data-api-unreachable", "report", "--out", "{tmp}/r", env=DATA_API_UNREACHABLE, says="Data API"),
        ),
    ),
    "backtest": Command(
        ("backtest", "--out", "{tmp}/backtest"),
        uses_store=True,
        cases=(
            case("bad-since", "backtest", "--since", "last week", "--out", "{tmp}/b", says="--since"),
            case(
                "since-after-as-of",
                "backtest",
                "--since",
                "2024-11-02",
                "--as-of",
                "2024-11-01",
                "--out",
                "{tmp}/b",
                says="--since must not be after --as-of",
            ),
            case("bad-periods", "backtest", "--periods", "0", "--out", "{tmp}/b", says="--periods"),
            case("bad-signal", "backtest", "--signals", "price", "--out", "{tmp}/b", says="--signals"),
            case("long-coin", "backtest", "--coins", "c" * 300, "--out", "{tmp}/b", says="longer than 256"),
            case("missing-input", "backtest", "--input", "{tmp}/nope.csv", "--out", "{tmp}/b", says="{tmp}/nope.csv"),
            case("input-not-csv", "backtest", "--input", "{binary}", "--out", "{tmp}/b", says="{binary}"),
            case("input-bad-header", "backtest", "--input", "{file}", "--out", "{tmp}/b", says="{file}: line 1"),
            case("input-is-a-directory", "backtest", "--input", "{tmp}", "--out", "{tmp}/b", says="{tmp}"),
            case("missing-events", "backtest", "--events", "{tmp}/nope.csv", "--out", "{tmp}/b", says="nope.csv"),
            case("events-bad", "backtest", "--events", "{file}", "--out", "{tmp}/b", says="{file}"),
            case("empty-out", "backtest", "--out", "", says="--out"),
            case("out-under-a-file", "backtest", "--out", "{file}/b", says="{file}/b"),
            case("no-store-configured", "backtest", "--out", "{tmp}/b", env={"MONGODB_URI": ""}, says="MONGODB_"),
            case("data-api-unreachable", "backtest", "--out", "{tmp}/b", env=DATA_API_UNREACHABLE, says="Data API"),
        ),
    ),
    "redrive": Command(
        ("redrive", *QUEUE, "--dry-run"),
        reads_config=False,
        uses_queue=True,
        cases=(case("queue-not-a-url", "redrive", "--queue-url", "garbage", says="--queue-url"),),
    ),
    "ensure-indexes": Command(("ensure-indexes",), uses_store=True),
    "local-queue": Command(
        ("local-queue", "--serve-seconds", "0"),
        reads_config=False,
        cases=(
            case("port-out-of-range", "local-queue", "--port", "99999", says="--port"),
            case("port-taken", "local-queue", "--port", "{busy}", "--serve-seconds", "0", says="port {busy}"),
            case("bad-max-receive-count", "local-queue", "--max-receive-count", "x", says="--max-receive-count"),
            case("serve-negative", "local-queue", "--serve-seconds", "-1", says="--serve-seconds"),
            case("serve-nan", "local-queue", "--serve-seconds", "nan", says="--serve-seconds"),
            case("visibility-over-12h", "local-queue", "--visibility-timeout", "43201", says="SQS's limit"),
        ),
    ),
}


def _cases() -> list[Case]:
    """Every command's own cases, and the trouble that applies to it: configuration, store, queue."""
    queue = {"{queue}": "{sqs}/123456789012/no-such-queue", "{endpoint}": "{sqs}"}
    unreachable = {"{queue}": "http://127.0.0.1:{closed}/123456789012/q", "{endpoint}": "http://127.0.0.1:{closed}"}
    not_a_url = {**queue, "{endpoint}": "garbage"}
    cases = []
    for name, command in COMMANDS.items():
        argv = _fill(command.argv, queue)
        if command.reads_config:
            cases += [Case(f"{name}-{id_}", argv, env, 2, says) for id_, env, says in BAD_CONFIG]
        if command.uses_store:
            cases.append(Case(f"{name}-store-unreachable", argv, UNREACHABLE_STORE, 2, "ServerSelectionTimeout"))
        if command.uses_queue:
            cases += [
                Case(f"{name}-queue-missing", argv, {}, 2, "does not exist"),
                Case(f"{name}-sqs-unreachable", _fill(command.argv, unreachable), {}, 2, "cannot reach"),
                Case(f"{name}-endpoint-not-a-url", _fill(command.argv, not_a_url), {}, 2, "--endpoint-url"),
            ]
        cases += [Case(f"{name}-{c.id}", _fill(c.argv, queue), c.env, c.status, c.says) for c in command.cases]
    return cases


def _fill(argv: tuple[str | bytes, ...], values: dict[str, str]) -> tuple[str | bytes, ...]:
    filled = []
    for arg in argv:
        if isinstance(arg, str):
            for key, value in values.items():
                arg = arg.replace(key, value)
        filled.append(arg)
    return tuple(filled)


CASES = _cases()


@dataclass(frozen=True)
class Outcome:
    status: int
    out: str
    err: str


@pytest.fixture(scope="module")
def places(tmp_path_factory, sqs_endpoint) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("cli-errors")
    (tmp / "plain.txt").write_text("not JSON, not a directory\n")
    (tmp / "binary.bin").write_bytes(b"\xff\xfe\x00garbage")
    (tmp / "event.json").write_text('{"not": "an SQS event"}')
    (tmp / "empty.txt").write_text("# nothing but a comment\n")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    with socket.socket() as busy:  # a port something listens on
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield {
            "{tmp}": str(tmp),
            "{file}": str(tmp / "plain.txt"),
            "{binary}": str(tmp / "binary.bin"),
            "{json}": str(tmp / "event.json"),
            "{empty}": str(tmp / "empty.txt"),
            "{sqs}": sqs_endpoint.url,
            "{closed}": str(closed),
            "{busy}": str(busy.getsockname()[1]),
        }


@pytest.fixture(scope="module")
def outcomes(places) -> dict[str, Outcome]:
    """Every case run in its own process, a few at a time."""
    values = places
    base = {name: value for name, value in os.environ.items() if not name.startswith(("MONGODB_", "ANOMALY_"))}
    base.update(MONGODB_URI="mongomock://", PYTHONDONTWRITEBYTECODE="1")

    def run(case: Case) -> Outcome:
        env = {**base, **{name: _fill((value,), values)[0] for name, value in case.env.items()}}
        argv = [sys.executable, "-m", "libs.cli", *_fill(case.argv, values)]
        done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, timeout=60)
        return Outcome(done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"))

    with ThreadPoolExecutor(max_workers=6) as pool:
        return dict(zip((case.id for case in CASES), pool.map(run, CASES)))


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_command_meeting_trouble_says_so_on_one_line_without_a_traceback(case, outcomes, places):
    outcome = outcomes[case.id]
    message = _fill((case.says,), places)[0]

    # no traceback, the exit status, and one error line, the last, saying what is wrong (any line before it is
    # the function's own JSON log or metric line: invoke and poll show them on stderr)
    assert "Traceback" not in outcome.err + outcome.out, outcome.err
    assert outcome.status == case.status, outcome.err
    *before, last = outcome.err.splitlines() or [""]
    assert last.startswith("error: ") and all(line.startswith("{") for line in before), outcome.err
    assert message in last
    assert "S3cret" not in outcome.err + outcome.out


def test_every_command_of_the_cli_has_its_entry():
    from libs.cli import _parser

    parser = _parser()
    [commands] = [action for action in parser._actions if action.dest == "command"]
    assert set(commands.choices) == set(COMMANDS)


def test_output_to_a_reader_that_went_away_ends_quietly(places):
    # given a command whose output goes into a pipe nobody reads any more (as with `| head -1` once head is done)
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = {**os.environ, "MONGODB_URI": "mongomock://"}

    # when it prints its answer
    try:
        done = subprocess.run(
            [sys.executable, "-m", "libs.cli", "invoke", str(REPO / "events" / "batch-with-invalid.json")],
            cwd=REPO,
            env=env,
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=60,
        )
    finally:
        os.close(write_end)

    # then it stops without a traceback (exit 1: its output was not all delivered)
    assert b"Traceback" not in done.stderr and b"BrokenPipeError" not in done.stderr, done.stderr
    assert done.returncode == 1


def test_an_interrupted_command_says_so_on_one_line(monkeypatch, capsys):
    from libs import cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_ensure_indexes", interrupted)

    assert cli.main(["ensure-indexes"]) == 130
    assert capsys.readouterr().err == "error: interrupted\n"
