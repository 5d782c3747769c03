"""The documentation: every public name has an API reference entry, and the examples in the
docstrings run (as doctests) and give what they show."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import xpnn

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "reference"
MODULES = ("sklearn", "datasets", "idx", "distributed", "book")


def documented() -> set[str]:
    """Every name the reference pages render: ``::: xpnn.Name`` and a module's ``members``."""
    names = set()
    for page in REFERENCE.glob("*.md"):
        text = page.read_text()
        names.update(re.findall(r"^::: (xpnn(?:\.\w+)+)$", text, flags=re.M))
        for module, members in re.findall(
            r"^::: (xpnn\.\w+)\n(?:    .*\n)*?      members: \[(.*)\]$", text, flags=re.M
        ):
            names.update(f"{module}.{m.strip()}" for m in members.split(","))
    return names


@pytest.mark.parametrize("module", ["xpnn", *(f"xpnn.{m}" for m in MODULES)])
def test_every_public_name_has_a_reference_entry(module):
    exported = importlib.import_module(module).__all__
    if module == "xpnn":
        exported = [n for n in exported if n not in MODULES]  # the modules have pages of their own
    missing = [n for n in exported if f"{module}.{n}" not in documented()]
    assert not missing, f"{module}: no entry in docs/reference for {missing}"


def test_docstring_examples_run():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    examples = 0
    for info in pkgutil.walk_packages(xpnn.__path__, "xpnn."):
        module = importlib.import_module(info.name)
        for test in finder.find(module):
            if test.examples:
                examples += len(test.examples)
                runner.run(test)
    failed, tried = runner.summarize(verbose=False)
    assert tried == examples >= 20  # the examples were found and run
    assert failed == 0


def test_readme_is_a_landing_page_whose_links_lead_into_the_docs():
    root = REFERENCE.parent.parent
    readme = (root / "README.md").read_text()
    assert len(readme.splitlines()) < 200
    command = readme.split("<!-- test-command -->\n```sh\n", 1)[1].split("\n", 1)[0]
    assert (
        command == 'python3 -m venv .venv && .venv/bin/pip install "nox>=2024.10" && .venv/bin/nox'
    )
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    assert len(links) >= 15
    missing = [link for link in links if not (root / link).is_file()]
    assert not missing, f"README links to missing files: {missing}"
    nav = re.findall(r": (\S+\.md)$", (root / "mkdocs.yml").read_text(), flags=re.M)
    unlinked = [p for p in nav if p.startswith("guides/") and f"docs/{p}" not in links]
    assert not unlinked, f"README links to no {unlinked}"


def test_the_snippets_a_page_includes_are_marked_in_their_files():
    """A page that shows an example's code includes it from the script (pymdownx.snippets,
    ``--8<-- "examples/x.py:section"``), which the tests run: no copy that can drift. Each
    names a file that exists and a section marked in it once."""
    root = REFERENCE.parent.parent
    included = [
        found
        for page in sorted((root / "docs").rglob("*.md"))
        for found in re.findall(r'^--8<-- "([^"]+)"$', page.read_text(), flags=re.M)
    ]
    assert len(included) >= 8  # the custom layer's three and the custom optimizer's five
    for entry in included:
        path, _, section = entry.partition(":")
        text = (root / path).read_text()
        assert section, entry
        for end in ("start", "end"):
            assert text.count(f"# --8<-- [{end}:{section}]\n") == 1, (entry, end)
