"""A griffe extension for the documentation site (mkdocs.yml loads it): doctest lines as code blocks.

The package's docstrings show short doctests (``>>> call()`` and the printed result under it) outside any
``Examples:`` section. Markdown reads a line opening with ``>`` as a quote, and the result line as text (a
list in brackets even as a link), so the API pages would show them as nested quotes. This wraps each run of
doctest lines at the docstring's left margin, with the output lines that follow it up to a blank line, in a
``pycon`` code fence. Docstrings are not changed on disk; indented doctests (under ``Example:``, which griffe
already renders as code) are left alone.
"""

from __future__ import annotations

from typing import Any

import griffe


def fence_doctests(text: str) -> str:
    """``text`` with every unindented run of ``>>>`` lines and their output wrapped in a ``pycon`` fence."""
    out: list[str] = []
    in_block = False
    in_fence = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
        if not in_fence and not in_block and line.startswith(">>>"):
            if out and out[-1].strip():
                out.append("")
            out.append("```pycon")
            in_block = True
        elif in_block and not line.strip():
            out.append("```")
            in_block = False
        out.append(line)
    if in_block:
        out.append("```")
    return "\n".join(out)


class DoctestFences(griffe.Extension):
    """Fence the doctests of every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)
