"""What the commands read and write on a real file system: ``--coins-file`` and the report's ``--out``."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest

from libs.cli import main, read_coins_file
from libs.errors import AnomalyServiceError
from libs.tools.local.sqs_endpoint import peek_messages
from tests.fakes.judged_store import END, judge_coins

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


@pytest.fixture
def judged(store):
    judge_coins(store, ("coin-a", "coin-b", "coin-c"))
    return store


def user_files(directory: Path) -> dict[str, bytes]:
    """Files of the user's that happen to be where the report goes, one named like an old picture."""
    files = {"notes.txt": b"mine", "plots/chart.png": b"my chart", "plots/01-mine.png": b"not a report's"}
    for name, content in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(content)
    return files


def test_an_empty_out_is_refused_and_the_current_directory_untouched(judged, tmp_path, capsys, monkeypatch):
    # given a current directory holding pictures named like a report's
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "01-coin-a-volume-7d.png").write_bytes(b"a picture of mine")
    before = tree(tmp_path)

    # when the report is asked to write to ''
    status, out, err = report(capsys, "")

    # then it refuses, naming the argument, and writes or deletes nothing
    assert (
        status == 2
        and out == ""
        and err == "error: --out is empty: name the report's directory, e.g. --out out/report\n"
    )
    assert tree(tmp_path) == before


def test_a_report_replaces_an_earlier_one_and_leaves_the_users_files(judged, tmp_path, capsys):
    # given an earlier report (of a narrower period) in a directory that also holds the user's files
    target = tmp_path / "report"
    assert report(capsys, str(target), "--coins", "coin-a")[0] == 0
    earlier = tree(target)
    mine = user_files(target)

    # when a new report goes to the same directory
    status, out, err = report(capsys, str(target))

    # then it replaced the earlier report's files and pictures, kept the user's, and left nothing temporary
    assert (status, err) == (0, "")
    now = tree(target)
    assert {name: now[name] for name in mine} == mine
    # (the pictures are exactly the ten the new page names: none of the earlier report's is left over)
    pictures = set(re.findall(r"<code>(plots/[^<]+)</code>", now["index.html"].decode()))
    assert len(pictures) == 10 and set(now) - set(mine) == {"episodes.json", "index.html"} | pictures
    assert now["episodes.json"] != earlier["episodes.json"]
    assert not list(target.glob(".report-partial-*")) and not list(tmp_path.glob(".report-partial-*"))


class Failing:
    """``plot_signal`` failing on its fourth picture, as a full disk or a store gone mid-report would."""

    def __init__(self, error: Exception) -> None:
        from libs.tools.report import build

        self.calls, self.error, self.plot_signal = 0, error, build.plot_signal

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == 4:
            raise self.error
        return self.plot_signal(*args, **kwargs)


FAILURES = {
    "disk-full": (OSError(28, "No space left on device", "x.png"), "error: --out {out}: cannot write the report"),
    "store-gone": (None, "error: reading coin"),
}


@pytest.mark.parametrize("failure", FAILURES, ids=list(FAILURES))
@pytest.mark.parametrize("earlier", [False, True], ids=["new-directory", "over-an-earlier-report"])
def test_a_report_that_fails_midway_leaves_no_half_written_report(
    judged, tmp_path, capsys, monkeypatch, failure, earlier
):
    from libs.errors import StoreUnavailable
    from libs.tools.report import build

    # given a target that does not exist yet (under a parent that does not either), or holds an earlier
    # report and the user's files
    target = tmp_path / "reports" / "week"
    before: dict[str, bytes] = {}
    if earlier:
        assert report(capsys, str(target), "--coins", "coin-a")[0] == 0
        user_files(target)
        before = tree(target)
    error, message = FAILURES[failure]
    monkeypatch.setattr(build, "plot_signal", Failing(error or StoreUnavailable("reading coin 'coin-b' failed")))

    # when the report fails on its fourth picture
    status, out, err = report(capsys, str(target))

    # then it says so on one line and exits 2, and what was there before is exactly what is there now
    assert status == 2 and out == "" and err.startswith(message.format(out=target)) and err.count("\n") == 1
    if earlier:
        assert tree(target) == before
        assert not list(target.glob(".report-partial-*"))
    else:
        assert not (tmp_path / "reports").exists()
    assert list(tmp_path.iterdir()) == ([tmp_path / "reports"] if earlier else [])


def test_a_plot_that_cannot_be_written_is_named(judged, tmp_path, capsys):
    # given --out under a regular file
    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    capsys.readouterr()

    # when a coin with data is plotted there
    status = main(["plot", "--coin", "coin-a", "--signal", "volume", "--out", str(blocker / "a.png")])

    # then one line names the argument, and the file in the way is untouched
    err = capsys.readouterr().err
    assert status == 2 and err.startswith(f"error: --out {blocker / 'a.png'}: cannot write the plot there: ")
    assert err.count("\n") == 1
    assert blocker.read_text() == "in the way"
