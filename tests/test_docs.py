"""The documentation: the site builds with no warning, the README stays a front door, every command has its page.

No server: `mkdocs build --strict` into a temporary folder (a broken link or anchor, or a page left out of the
navigation, is a warning and so a failure), the README's length, and the subcommands of `python -m loadtest`
(read from its own parser, so a new command without a page fails here) against the pages' `command:` front matter.
"""

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

from loadtest.__main__ import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README_MAX_LINES = 300


def test_the_site_builds_with_no_warning(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")  # Material's notice about its successor, not about this site
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    output = built.stdout + built.stderr
    assert built.returncode == 0, output
    assert "WARNING" not in output, output
    assert (tmp_path / "site" / "experiments" / "run.html").is_file()


def test_the_readme_is_at_most_300_lines():
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into a page under docs/"


def loadtest_commands():
    """The subcommands `python -m loadtest` accepts."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(subparsers.choices)


def documented_commands():
    """Each page's `command:` front matter, by command."""
    pages = {}
    for page in sorted(DOCS.rglob("*.md")):
        found = re.match(r"---\n(.*?)\n---\n", page.read_text(), re.S)
        for line in found.group(1).splitlines() if found else ():
            key, _, value = line.partition(":")
            if key.strip() == "command":
                pages.setdefault(value.strip(), []).append(page.relative_to(DOCS).as_posix())
    return pages


def test_every_loadtest_command_has_one_page():
    commands, pages = loadtest_commands(), documented_commands()
    assert "run" in commands and "bench" in commands  # the parser was read, not an empty set
    missing = sorted(commands - set(pages))
    assert not missing, f"no page under docs/ has the front matter 'command: NAME' for: {', '.join(missing)}"
    unknown = sorted(set(pages) - commands)
    assert not unknown, f"pages name commands python -m loadtest does not have: {unknown}"
    doubled = {command: where for command, where in pages.items() if len(where) > 1}
    assert not doubled, f"a command with more than one page: {doubled}"
