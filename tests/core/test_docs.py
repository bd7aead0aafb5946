"""Issue 31: the README stays short and the documentation site stays whole.

The site itself is built by ``make test`` (``mkdocs build --strict``, before pytest); these checks are the fast
part: the README's length, every relative link in the README and ``docs/`` pointing at a file that exists, every
page under ``docs/`` reachable from ``mkdocs.yml``'s nav, and the API pages naming objects only by public paths.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
MAX_README_LINES = 300

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def _prose(text: str) -> str:
    """``text`` without fenced code blocks and inline code, where brackets and parentheses are not links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def relative_links(text: str) -> list[str]:
    """The link targets of ``text`` that point into the repository: no scheme, no bare ``#anchor``."""
    targets = []
    for target in LINK.findall(_prose(text)):
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http(s), mailto, ...; an anchor on the same page
        targets.append(target.split("#", 1)[0].split("?", 1)[0])
    return targets


def _nav_pages(node) -> list[str]:
    if isinstance(node, str):
        return [node] if node.endswith(".md") else []
    if isinstance(node, dict):
        return [page for value in node.values() for page in _nav_pages(value)]
    if isinstance(node, list):
        return [page for item in node for page in _nav_pages(item)]
    return []


def _mkdocs_config() -> dict:
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text())


def test_the_readme_is_at_most_300_lines():
    lines = len(README.read_text().splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines: move detail into a docs/ page and link it"


def test_the_link_finder_skips_code_external_links_and_anchors():
    text = (
        '[a](docs/a.md) ![b](img/b.png) [c](https://x.org/c.md) [d](#d) [e](e.md#part "title")\n'
        "`[f](f.md)` and `data: {x: [1]}`\n```\n[g](g.md)\n```\n"
    )
    assert relative_links(text) == ["docs/a.md", "img/b.png", "e.md"]


def test_every_relative_link_in_the_readme_and_docs_points_at_a_file():
    broken = []
    for path in _markdown_files():
        for target in relative_links(path.read_text()):
            if target and not (path.parent / target).resolve().exists():
                broken.append(f"{path.relative_to(ROOT)} -> {target}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_nav_lists_every_docs_page_and_only_pages_that_exist():
    nav = _nav_pages(_mkdocs_config()["nav"])
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert sorted(pages - set(nav)) == [], "pages under docs/ missing from mkdocs.yml's nav (orphans)"
    assert sorted(set(nav) - pages) == [], "nav entries without a page under docs/"
    assert len(nav) == len(set(nav)), "a page is listed twice in the nav"


# the re-export paths the API pages may use: internal modules at the package root are being moved
PUBLIC = re.compile(
    r"^lightning_ted(\.methods|\.research|\.streaming|\.frontier(\.\w+)?|\.observe\.\w+|\.zoo\.\w+)?(\.\w+)?$"
)
INTERNAL_AT_ROOT = {p.stem for p in (ROOT / "lightning_ted").glob("*.py")} - {"__init__"}


def test_the_api_pages_name_objects_only_by_their_public_paths():
    names = [
        line.removeprefix(":::").strip()
        for page in sorted((DOCS / "reference").glob("*.md"))
        for line in page.read_text().splitlines()
        if line.startswith(":::")
    ]
    assert names, "docs/reference renders nothing"
    internal = [n for n in names if not PUBLIC.match(n) or n.split(".")[1:2] and n.split(".")[1] in INTERNAL_AT_ROOT]
    assert not internal, f"name these by their re-exports (lightning_ted.X, lightning_ted.methods.X): {internal}"
