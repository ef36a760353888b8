"""The scorecard page (docs/scorecard.md): the tables, the guide derived from them, and how each run is made.

Everything on the page is a function of the rows and the saved runs, so
rebuilding it from the same runs gives the same bytes (the test compares
it with the committed page). Commands are shown with the committed folder
(SHOWN_ROOT), wherever the runs were read from.
"""

from pathlib import Path

from loadtest.experiments.scorecard_cells import (
    CAPACITY,
    COLUMNS,
    FIGURE,
    NOT_APPLICABLE,
    NOT_MEASURED,
)
from loadtest.experiments.scorecard_runs import KINDS, ROUND, estimate, plan

SHOWN_ROOT = Path("docs/results/scorecard")
TABLES = {"cost": "What a request costs, and how many the site holds",
          "logged out": "Who is logged out when something fails",
          "writes lost": "Acknowledged session writes lost, and the outage",
          "structure": "What each keeps by construction"}


def markdown(rows, cells, rounds):
    """The whole page, front matter to the last line."""
    measured = sum(c.status == FIGURE for c in cells.values())
    timed = sum(c.status in (FIGURE, NOT_MEASURED) for c in cells.values())
    parts = ["---\ncommand: scorecard\n---\n", "# Choose a session store: the scorecard\n",
             "One row per session store the registry keeps and per store topology `deploy` offers; every figure "
             "is read from a saved run under `docs/results/scorecard/` and links to it (its page and history). "
             "The page is generated, never typed: `python -m loadtest scorecard` rebuilds it from the saved runs, "
             "and a test (`tests/test_scorecard.py`) fails when it differs from what they give.\n",
             f"**{measured} of {timed} measurable cells measured.**"
             + (" The others are not yet measured on a quiet machine: each says so and links to the command "
                "that measures it." if measured < timed else "") + "\n"]
    for key, title in TABLES.items():
        parts.append(f"## {title}\n")
        parts.append(_table(rows, cells, COLUMNS[key]) + "\n")
    parts.append("## A short guide\n")
    parts.append("Each line is derived from the figures above by a rule (`loadtest/experiments/scorecard_page.py`), "
                 "and names the cells behind it.\n")
    parts.append("\n".join(f"- {line}" for line in guide(rows, cells)) + "\n")
    parts.append(_how(rows, rounds))
    return "\n".join(parts)


def _table(rows, cells, columns):
    header = "| configuration | " + " | ".join(c.header for c in columns) + " |"
    lines = [header, "|---|" + "---|" * len(columns)]
    for row in rows:
        lines.append(f"| `{row.name}` | " + " | ".join(_shown(cells[(row.name, c.header)]) for c in columns) + " |")
    return "\n".join(lines)


def _shown(cell):
    """A cell as Markdown: the figure and its links, or what is missing and why."""
    note = f"; {cell.note}" if cell.note else ""
    if cell.status == FIGURE:
        return cell.text + note + " " + " ".join(f"[{label}]({path})" for label, path in cell.links)
    if cell.status == NOT_MEASURED:  # with a reason, no command here measures it yet: no link to one
        return (f"not measured: {cell.text}" if cell.text else f"not measured ([how](#{cell.kind}))") + note
    if cell.status == NOT_APPLICABLE:
        return f"not applicable: {cell.text}"
    return cell.text


def _figure(row, cell):
    """A row named with its figure and the first file behind it, for the guide."""
    link = f", [run]({cell.links[0][1]})" if cell.links else ""
    return f"`{row.name}` ({cell.text.split(';')[0]}{link})"


def _rule(rows, cells, header, keep, lead, kept, lost, worst=max):
    """One guide line: the rows whose measured figure in `header` passes `keep` in every round (the worst round,
    `worst` of its values, decides: a store that lost a write in one round of three is not recommended; so does one
    whose run could not tell some of them), and the rest measured."""
    measured = [(row, cells[(row.name, header)]) for row in rows if cells[(row.name, header)].status == FIGURE]
    if not measured:
        return f"{lead}: not measured yet (the column \"{header}\")."
    passes = {row.name: keep(worst(cell.values)) and not any(cell.unsure) for row, cell in measured}
    good = [_figure(row, cell) for row, cell in measured if passes[row.name]]
    bad = [_figure(row, cell) for row, cell in measured if not passes[row.name]]
    missing = sum(cells[(row.name, header)].status == NOT_MEASURED for row in rows)
    line = f"{lead}: {kept} {', '.join(good) or 'none measured'}"
    line += f"; {lost} {', '.join(bad)}" if bad else ""
    return line + (f"; {missing} rows not measured yet." if missing else ".")


def guide(rows, cells):
    """The guide's lines, each a rule over one column's figures (or facts)."""
    instance, primary, partition, failover, cpu, capacity, revoke = (
        "users logged out: an instance dies", "users logged out: the store's primary dies",
        "acknowledged session writes lost: the store partitioned",
        "seconds until requests succeed again: the store's primary dies", "server CPU a request, over memory's",
        CAPACITY, "a logout revokes the session everywhere")
    lines = [
        _rule(rows, cells, instance, lambda v: v == 0, "If logins must survive an instance dying",
              "choose from", "not"),
        _rule(rows, cells, primary, lambda v: v == 0, "If logins must survive the store's primary (or only node) "
              "dying", "choose from", "not"),
        _rule(rows, cells, partition, lambda v: v == 0, "If no acknowledged session write may be lost when the "
              "store is partitioned", "choose from", "these lose some, or left some unconfirmed:"),
        _rule(rows, cells, failover, lambda v: v <= 10, "If requests must succeed again within 10 s of the "
              "store's primary dying", "choose from", "slower:"),
        _rule(rows, cells, cpu, lambda v: v <= 1.5, "If a request may cost at most 1.5 times memory's server CPU",
              "choose from", "dearer:"),
        _rule(rows, cells, capacity, lambda v: v >= 500, "If three instances on a 2-core machine like this one must "
              "hold 500 requests a second", "choose from", "fewer:", worst=min),
    ]
    kept = [f"`{row.name}`" for row in rows if cells[(row.name, revoke)].text.startswith("no")]
    lines.append("If a logout must end a copied cookie's session everywhere: avoid "
                 f"{', '.join(kept) or 'none'} (the column \"{revoke}\", from the registry).")
    return lines


def duration(steps):
    """How long the plan takes, in words: the commands' own estimates, and the capacity steps' most."""
    fixed, more = estimate(steps)
    return (f"about {fixed / 3600:.1f} hours by the commands' own estimates, plus up to {more / 3600:.1f} hours of "
            "capacity steps (each ends when the site gives, or at the steps' most users)")


def _how(rows, rounds):
    """How each kind of run is made: what it measures, its command per round, and how long the plan takes."""
    steps = plan(rows, SHOWN_ROOT, rounds)
    parts = ["## How each column is measured\n",
             f"`python -m loadtest scorecard --measure` runs every command below ({rounds} rounds, the rows in "
             "alternating order; `bench` alternates its own rounds), then rebuilds this page; `--dry-run` "
             f"prints the commands only. It takes {duration(steps)} (not yet timed on a quiet machine). "
             "`python -m loadtest scorecard` rebuilds the page alone. A saved run may hold fewer rows than its "
             "command below: rows a kind learned to measure later were measured in rounds of their own, and a "
             "cell takes every round that measured its row, its links named by round; each run's page names its "
             "own command.\n"]
    for kind in KINDS.values():
        mine = [(number, argv) for k, number, _, argv in steps if k is kind]
        parts.append(f"### {kind.name}\n")
        parts.append(f"{kind.measures[0].upper()}{kind.measures[1:]}; saved in "
                     f"`{SHOWN_ROOT / kind.name}/{ROUND}<k>/`.\n")
        parts.append("```sh\n" + "\n".join(f"python -m loadtest {' '.join(argv)}" for _, argv in mine) + "\n```\n")
    parts.append("A cell ending in (registry) or (deploy) is a fact, read from the registry (`labcore/registry.py`) "
                 "or from the Topology deploy starts for the row, not a measurement.\n")
    return "\n".join(parts)
