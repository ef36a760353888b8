"""The scorecard's columns and cells: a figure with the runs behind it, not measured, not applicable, or a fact.

A timed cell is a figure only when a saved run measured it: one round
shows its figure, several their median and range. A structural cell (what
must run beside the site, whether a logout revokes a copied cookie) is a
fact read from the registry or deploy's Topology, and says so.
"""

import os
import statistics
from dataclasses import dataclass
from pathlib import Path

from loadtest.experiments import scorecard_rows
from loadtest.experiments.scorecard_runs import CAPACITY_STEPS, KINDS, ROUND, links, runs

FIGURE, NOT_MEASURED, NOT_APPLICABLE, FACT = "figure", "not measured", "not applicable", "fact"
CAPACITY = (f"capacity: req/s held (p99 ≤ {CAPACITY_STEPS.p99_ms:g} ms, ≤ {CAPACITY_STEPS.failed_pct:g} % failed, "
            "3 instances)")


@dataclass(frozen=True)
class Column:
    header: str
    kind: str  # the KINDS name of the run that measures it; "" for a fact
    value: object  # figures -> the number compared across rounds and rows, or None if the run lacks it
    text: object  # figures -> one round's cell text (for a fact: row -> its text)
    unit: object = "{:g}".format  # a number as a cell shows it
    note: object = None  # row -> a fact the cell adds, measured or not (the persistence a restart meets)
    floor: object = None  # figures -> whether its value is only a lower bound (see cell())
    unsure: object = None  # figures -> how many more are neither lost nor kept, for all a read could tell


@dataclass(frozen=True)
class Cell:
    status: str
    text: str
    values: tuple = ()  # one per round that measured it
    links: tuple = ()  # (label, path) of the files behind it
    kind: str = ""
    note: str = ""  # a fact beside the figure, or beside "not measured"
    unsure: tuple = ()  # per round, how many more its run could not tell lost or kept (Column.unsure)

    @property
    def value(self):
        return statistics.median(self.values) if self.values else None


def _pct(part, whole):
    return 100 * part / whole if whole else 0.0


def _lost(part, whole, what):
    return f"{part} of {whole} {what} ({_pct(part, whole):.1f} %)"


def _store(key):
    return lambda f: None if not f.get("store") else f["store"][key]


def _writes(f):
    return f["store"] and _lost(f["store"]["writes_lost"], f["store"]["writes_acknowledged"], "writes")


def _total(f, key):
    return f["total"][key]


def _restart(f):
    return f"{_lost(f['store']['logins_lost'], f['store']['logins_acknowledged'], 'logins')} lost"


def _capacity_value(f):
    """The rate held; 0 when the first steps were already over the bounds (none of a run with no step: no figure)."""
    if not f["steps"]:
        return None
    return f["rps"] or 0


def _ran_out(f):
    """Whether the figure is the last step's: the steps ended (at their most users, or stopped by Locust's own
    reading) before the site gave, so the figure is a floor of its capacity."""
    return bool(f["steps"]) and f["users"] == f["steps"][-1]["users"]


def _capacity(f):
    if f["rps"] is None:
        return f"no step held (under {f['steps'][0]['users']} users)"
    return f"{'at least ' if _ran_out(f) else ''}{f['rps']:g} req/s ({f['users']} users)"


PERCENT = "{:.1f} %".format
COLUMNS = {
    "cost": [
        Column("server CPU a request, over memory's", "bench", lambda f: f["cpu_to_memory"]["median"],
               lambda f: "{median:.2f}× ({min:.2f}–{max:.2f} over its rounds)".format(**f["cpu_to_memory"]),
               "{:.2f}×".format),
        Column(CAPACITY, "capacity", _capacity_value, _capacity, "{:g} req/s".format, floor=_ran_out),
    ],
    "logged out": [
        Column("users logged out: an instance dies", "instance-kill", lambda f: f["users_lost_session_pct"],
               lambda f: _lost(f["users_lost_session"], f["users"], "users"), PERCENT),
        Column("users logged out: the store's primary dies", "store-kill", lambda f: f["users_lost_session_pct"],
               lambda f: _lost(f["users_lost_session"], f["users"], "users"), PERCENT),
        Column("logins lost: the store partitioned", "split-brain",
               lambda f: _pct(_total(f, "logins_lost"), _total(f, "logins_acknowledged")),
               lambda f: _lost(_total(f, "logins_lost"), _total(f, "logins_acknowledged"), "logins"), PERCENT,
               unsure=lambda f: _total(f, "logins_unconfirmed")),
    ],
    "writes lost": [
        Column("acknowledged session writes lost: an instance dies", "instance-kill",
               lambda f: f["store"] and _pct(f["store"]["writes_lost"], f["store"]["writes_acknowledged"]),
               _writes, PERCENT),
        Column("acknowledged session writes lost: the store's primary dies", "store-kill",
               lambda f: f["store"] and _pct(f["store"]["writes_lost"], f["store"]["writes_acknowledged"]),
               _writes, PERCENT),
        Column("acknowledged session writes lost: the store partitioned", "split-brain",
               lambda f: f["writes_lost_pct"],
               lambda f: _lost(_total(f, "writes_lost"), _total(f, "writes_acknowledged"), "writes"), PERCENT,
               unsure=lambda f: _total(f, "writes_unconfirmed")),
        Column("seconds until requests succeed again: the store's primary dies", "store-kill",
               _store("failover_s"), lambda f: f"{f['store']['failover_s']:g} s", "{:g} s".format),
    ],
    "structure": [
        Column("a logout revokes the session everywhere", "", None,
               lambda row: f"{scorecard_rows.revokes(row)} (registry)"),
        Column("logins survive a restart of the store", "store-restart", lambda f: f["store"]["logins_lost"],
               _restart, "{:g} lost".format, scorecard_rows.persistence),
        Column("what runs beside the site", "", None, lambda row: f"{scorecard_rows.beside(row)} (deploy)"),
    ],
}


def cell(row, column, root, page_folder):
    """The row's cell in the column, from the runs under root; links relative to the page's folder."""
    if not column.kind:
        return Cell(FACT, column.text(row))
    kind = KINDS[column.kind]
    skipped = kind.applies(row)
    if skipped:
        return Cell(skipped.status, skipped.why, kind=kind.name)
    measured = []
    for folder in runs(root, kind):
        figures = kind.figures_of(folder, row)
        if figures is not None and column.value(figures) is not None:
            measured.append((folder, figures))
    # Each link named by its run's round (`round4` gives "page 4"), so a cell that took rounds 4 to 6 says so.
    shown = tuple((f"{label} {folder.name[len(ROUND):]}" if len(measured) > 1 else label, _relative(path, page_folder))
                  for folder, _ in measured for label, path in links(folder, kind.name_of(row)))
    note = column.note(row) if column.note else ""
    if not measured:
        return Cell(NOT_MEASURED, "", kind=kind.name, note=note)
    values = tuple(column.value(figures) for _, figures in measured)
    if len(measured) == 1:
        text = column.text(measured[0][1])
    else:
        # A floor above the median leaves it as it is; one at or below it (of two middle values, the higher)
        # makes the median a floor too.
        median = statistics.median(values)
        floor = column.floor and any(column.floor(f) and column.value(f) <= statistics.median_high(values)
                                     for _, f in measured)
        text = (f"{'at least ' if floor else ''}{column.unit(median)} ({column.unit(min(values))}–"
                f"{column.unit(max(values))}, {len(values)} rounds)")
    unsure = tuple(column.unsure(figures) for _, figures in measured) if column.unsure else ()
    if any(unsure):  # their user's final read was refused: the figure is a floor
        text += f"; {_listed(unsure)} more unconfirmed"
    return Cell(FIGURE, text, values, shown, kind.name, note, unsure)


def _listed(numbers):
    """1, 2 and 3."""
    words = [str(n) for n in numbers]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _relative(path, folder):
    return Path(os.path.relpath(path, folder)).as_posix()


def table_cells(rows, root, page_folder):
    """{(row name, column header): Cell} for every row and column."""
    return {(row.name, column.header): cell(row, column, root, page_folder)
            for row in rows for columns in COLUMNS.values() for column in columns}
