"""The README stays short and the docs/ pages stay reachable: every page linked, no broken relative link.

A relative link is ``[text](path)`` or ``[text](path#anchor)``; an anchor is a
heading's GitHub slug (lower case, punctuation dropped, spaces as hyphens).
Links inside fenced code blocks and to other sites are not checked.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
PAGES = sorted((REPO / "docs").glob("*.md"))
#: "At most about 200 lines" (issue 11): a little slack, not a second README.
README_MAX_LINES = 210

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} (.+)$", re.M)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def prose(path: Path) -> str:
    """The file's text without its fenced code blocks."""
    return FENCE.sub("", path.read_text(encoding="utf-8"))


def anchors(path: Path) -> set[str]:
    return {github_slug(heading) for heading in HEADING.findall(prose(path))}


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in LINK.findall(prose(path)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):
            continue
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        if not destination.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target} (no such heading)")
    return broken


def test_the_readme_is_short():
    # given the README / when its lines are counted / then a newcomer reads it in minutes
    assert len(README.read_text(encoding="utf-8").splitlines()) <= README_MAX_LINES


def test_every_docs_page_is_linked_from_the_readme():
    # given the pages under docs/
    assert PAGES
    # when the README's links are collected
    linked = {target.partition("#")[0] for target in LINK.findall(prose(README))}
    # then each page is one of them
    assert [page.name for page in PAGES if f"docs/{page.name}" not in linked] == []


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_reach_a_file_and_heading(path):
    # given a markdown file / when its relative links are followed / then each reaches its file and heading
    assert broken_links(path) == []


def test_the_link_check_finds_a_missing_file_and_heading(tmp_path):
    # given a page linking a missing file and a missing heading of an existing page
    (tmp_path / "a.md").write_text("# Real heading\n\n[x](b.md) [y](a.md#gone) [z](a.md#real-heading)\n")
    # when checked / then exactly the two broken ones are reported
    assert broken_links(tmp_path / "a.md") == ["b.md (no such file)", "a.md#gone (no such heading)"]
