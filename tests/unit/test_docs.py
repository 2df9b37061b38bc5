"""The README stays short and the docs/ pages stay reachable: every page linked, no broken relative link.

A relative link is ``[text](path)`` or ``[text](path#anchor)``; an anchor is a
heading's GitHub slug (lower case, punctuation dropped, spaces as hyphens).
Links inside fenced code blocks and to other sites are not checked.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
PAGES = sorted((REPO / "docs").glob("*.md"))
#: A README read in minutes: about 200 lines with a little slack; the rest lives in docs/.
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


# --- the contract: every "contract §N" resolves, and nothing points outside the repository ------------------

CONTRACT = REPO / "docs" / "contract.md"
#: The contract's sections: ``## §N Title`` in docs/contract.md (and in docs/contract/*.md, were it ever split).
SECTION = re.compile(r"^## §(\d+) \S", re.M)
#: A citation: ``contract §9``, ``contract §9 and §11``, ``contract §9, §10``; inside the contract, any ``§N``.
CITATION = re.compile(r"contract §(\d+)((?:(?:,| and) §\d+)*)")
SECTION_SIGN = re.compile(r"§(\d+)")
#: What a reader who cloned the repository could not follow: the brief we were handed, a folder beside the
#: checkout, a tracker's issue numbers. Each place should say the reason itself.
#: (Written in pieces so that a plain grep for them finds none in this file either.)
OUTSIDE = re.compile(r"\bS" r"PEC\b|\.\./shared\b|(?i:\bissue \d)|\(#\d+\)")
#: Files not of this repository's own words: generated locks.
NOT_OURS = {"package-lock.json", "requirements.txt", "requirements-dev.txt"}


def tracked_files() -> list[Path]:
    """The repository's tracked text files (git ls-files; every file under it where git is absent)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=60
        ).stdout.decode()
        paths = [REPO / name for name in listed.split("\0") if name]
    except (OSError, subprocess.SubprocessError):
        skip = {".git", ".venv", "node_modules", ".serverless", ".cache", "out"}
        paths = [p for p in REPO.rglob("*") if p.is_file() and not skip & set(p.relative_to(REPO).parts)]
    return [p for p in paths if p.is_file() and p.name not in NOT_OURS and p != Path(__file__).resolve()]


def text_of(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None  # a binary file cites nothing


def contract_sections() -> set[int]:
    pages = [CONTRACT, *sorted((REPO / "docs" / "contract").glob("*.md"))]
    return {int(number) for page in pages if page.exists() for number in SECTION.findall(page.read_text())}


def citations(path: Path, text: str) -> list[tuple[int, int]]:
    """(line, section) of every section ``path`` cites."""
    found = []
    inside = path == CONTRACT or path.parent == REPO / "docs" / "contract"
    for number, line in enumerate(text.splitlines(), start=1):
        if inside:
            found += [(number, int(n)) for n in SECTION_SIGN.findall(line)]
            continue
        for first, more in CITATION.findall(line):
            found += [(number, int(n)) for n in (first, *SECTION_SIGN.findall(more))]
    return found


def test_the_contract_has_its_thirteen_numbered_sections_once_each():
    numbers = [int(n) for n in SECTION.findall(CONTRACT.read_text())]
    assert numbers == list(range(1, 14))


def test_every_section_the_repository_cites_is_in_the_contract():
    # given every tracked file and the contract's sections
    sections = contract_sections()
    # when the citations are collected
    dangling = [
        f"{path.relative_to(REPO)}:{line}: §{section}"
        for path in tracked_files()
        if (text := text_of(path)) is not None
        for line, section in citations(path, text)
        if section not in sections
    ]
    # then each reaches a section (and there are citations to check at all)
    assert dangling == []
    assert sum(len(citations(p, t)) for p in tracked_files() if (t := text_of(p))) > 100


def test_nothing_points_outside_the_repository():
    # given every tracked file / then none sends its reader to the brief, a sibling folder or an issue number
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()[:120]}"
        for path in tracked_files()
        if (text := text_of(path)) is not None
        for number, line in enumerate(text.splitlines(), start=1)
        if OUTSIDE.search(line)
    ]
    assert found == []


def test_the_checks_find_a_dangling_citation_and_an_outside_reference(tmp_path):
    # given a file citing a section the contract lacks, and sections cited the three ways the code does
    page = tmp_path / "x.py"
    page.write_text('"""As contract §2 and §14 say, and contract §9, §10."""\n# see ' + "SP" + "EC.md, iss" + "ue 13\n")
    # when checked / then the citations are read in full, and each outside reference is found
    assert citations(page, page.read_text()) == [(1, 2), (1, 14), (1, 9), (1, 10)]
    assert {n for _, n in citations(page, page.read_text())} - contract_sections() == {14}
    assert OUTSIDE.search(page.read_text().splitlines()[1])
    assert not OUTSIDE.search("the spec's keys; see docs/contract.md; a specific issue of the day")
