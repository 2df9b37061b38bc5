"""What the commands read and write on a real file system: ``--coins-file`` and the report's ``--out``."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from libs.cli import main, read_coins_file
from libs.errors import AnomalyServiceError
from libs.tools.local.sqs_endpoint import peek_messages
from tests.fakes.judged_store import END

SINCE = END - timedelta(days=7)


def test_a_coins_file_reads_one_id_a_line_without_comments_spaces_blank_lines_or_a_bom(tmp_path):
    # given a file saved by an editor that writes a byte-order mark, with comments after ids and indented lines
    coins_file = tmp_path / "watchlist.txt"
    coins_file.write_bytes(
        "bitcoin  # BTC\n"
        "  ethereum\t\n"
        "# stablecoins\n"
        "\n"
        "usd-coin#USDC\n"
        "   # nothing here\n"
        "中文币 🙂\r\n"
        "ethereum\n".encode("utf-8-sig")
    )

    # when it is read
    coins = read_coins_file(str(coins_file))

    # then the ids are the lines' text before any '#', stripped, in file order (the first one too)
    assert coins == ["bitcoin", "ethereum", "usd-coin", "中文币 🙂", "ethereum"]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"bitcoin\nether\xffeum\n", "line 2 is not UTF-8 text"),
        (None, "No such file or directory"),
    ],
    ids=["not-utf8", "missing"],
)
def test_a_coins_file_that_cannot_be_read_is_named(tmp_path, content, message):
    coins_file = tmp_path / "coins.txt"
    if content is not None:
        coins_file.write_bytes(content)
    with pytest.raises(AnomalyServiceError, match=f"cannot read --coins-file {coins_file}: {message}"):
        read_coins_file(str(coins_file))


def test_enqueue_sends_the_coins_of_a_file_with_a_bom_and_comments(sqs, sqs_endpoint, queues, tmp_path, capsys):
    coins_file = tmp_path / "coins.txt"
    coins_file.write_bytes("bitcoin  # BTC\nethereum # ETH\n".encode("utf-8-sig"))

    status = main(
        ["enqueue", "--queue-url", queues.url, "--endpoint-url", sqs_endpoint.url, "--coins-file", str(coins_file)]
    )

    assert status == 0 and f"(2 coins from {coins_file}" in capsys.readouterr().out
    assert [json.loads(m["Body"])["coin_ids"] for m in peek_messages(sqs, queues.url)] == [["bitcoin", "ethereum"]]


# --- the report's --out ---------------------------------------------------------------------------------


def report(capsys, out: str, *arguments: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(["report", "--since", SINCE.isoformat(), "--as-of", END.isoformat(), *arguments, "--out", out])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def tree(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}
