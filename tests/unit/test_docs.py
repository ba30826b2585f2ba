"""The documentation stays what users need: a short README, the docs/ pages it links to, no citations
of notes that are not in the repository, and every environment variable the code reads documented."""

from __future__ import annotations

import re

import pytest

from tests.support import REPO

PAGES = (
    "configuration.md",
    "operations.md",
    "security.md",
    "revocation.md",
    "retention.md",
    "architecture.md",
    "wire-contract.md",
    "benchmarks.md",
)
CODE_DIRS = ("api", "worker", "shared", "cli", "bench", "tests")
# Notes kept outside the repository: code and tests point at docs/ instead.
OUTSIDE_NOTES = re.compile(r"design\.md|contract §|\.\./shared")
ENV_NAME = re.compile(r"\b(PCAQ_[A-Z0-9_]*[A-Z0-9]|REDIS_URL)\b")


def _sources() -> list:
    return sorted(
        p for d in CODE_DIRS for p in (REPO / d).rglob("*.py") if p != REPO / "tests/unit/test_docs.py"
    )


def test_readme_is_short():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < 250, f"README.md has {len(lines)} lines; move detail to docs/"


@pytest.mark.parametrize("page", PAGES)
def test_docs_page_exists_and_is_linked(page):
    assert (REPO / "docs" / page).is_file(), f"docs/{page} is missing"
    assert f"docs/{page}" in (REPO / "README.md").read_text(encoding="utf-8"), (
        f"README does not link docs/{page}"
    )


def test_code_cites_no_notes_outside_the_repository():
    cited = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in _sources()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if OUTSIDE_NOTES.search(line)
    ]
    assert not cited, "cite docs/ instead:\n" + "\n".join(cited)


def test_every_environment_variable_is_documented():
    read = {name for path in _sources() for name in ENV_NAME.findall(path.read_text(encoding="utf-8"))}
    assert "REDIS_URL" in read and "PCAQ_MASTER_KEY" in read  # the scan itself works
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]*)`", (REPO / "docs" / "configuration.md").read_text()))
    missing = sorted(read - documented)
    assert not missing, f"add to docs/configuration.md: {', '.join(missing)}"
