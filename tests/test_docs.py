"""The README and docs/ stay true: every relative link resolves (file and anchor), every
`make` target they name exists, every `python -m` module they run is importable, and the
README stays short (the details live in docs/)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from harness.process import ROOT

README_MAX_LINES = 250
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def prose(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    for line in prose(path.read_text()):
        match = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(2))
            name, n = base, 0
            while name in found:
                n += 1
                name = f"{base}-{n}"
            found.add(name)
    return found


def links(path: Path) -> list[str]:
    """Relative links of a page: no scheme, no mailto; in-page anchors included."""
    targets = []
    for line in prose(path.read_text()):
        line = re.sub(r"`[^`]*`", "", line)  # inline code is not a link
        targets += [t for t in LINK.findall(line) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]
    return targets


def broken_links(path: Path) -> list[str]:
    problems = []
    for target in links(path):
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            problems.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    assert links(page) or page.name != "README.md", "the README links nowhere"
    assert not broken_links(page)


def test_the_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move details to docs/"


def test_the_readme_links_every_docs_page() -> None:
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in links(ROOT / "README.md")}
    assert set(PAGES[1:]) <= linked, sorted(str(p.relative_to(ROOT)) for p in set(PAGES[1:]) - linked)


def code(text: str) -> list[str]:
    """Inline code spans and the lines of fenced blocks: where commands are written."""
    prose_lines = prose(text)
    blocks = [line for line in text.splitlines() if line not in prose_lines]
    return blocks + [span for line in prose_lines for span in re.findall(r"`([^`]+)`", line)]


def test_make_targets_named_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*)\s*:", makefile, re.M))
    named = {
        (page.name, t)
        for page in PAGES
        for snippet in code(page.read_text())
        for t in re.findall(r"(?:^|[\s;&|(])make (?:-s )?([a-z][\w-]*)", snippet)
    }
    missing = sorted(f"{page}: make {t}" for page, t in named if t not in targets)
    assert not missing, missing


def test_python_modules_run_exist() -> None:
    named = {
        m
        for page in PAGES
        for snippet in code(page.read_text())
        for m in re.findall(r"python -m ([A-Za-z_][\w.]*)", snippet)
    }
    missing = sorted(m for m in named if importlib.util.find_spec(m) is None)
    assert named and not missing, missing


def test_the_link_check_can_fail(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Title\n\n## Some `code`, here\n")
    page = tmp_path / "b.md"
    page.write_text(
        "[ok](a.md#some-code-here) [gone](missing.md) [bad anchor](a.md#nope) [web](https://example.org)\n"
        "```\n[in code](missing-too.md)\n```\n"
    )
    assert broken_links(page) == ["missing.md: no such file", "a.md#nope: no heading with anchor #nope in a.md"]
