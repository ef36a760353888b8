"""Split brain's output: its table's columns, the table, each scenario's chart and the headline, from its figures."""

from loadtest.reports.svg import series_chart
from loadtest.reports.tables import Table

COLUMNS = [
    ("scenario", lambda r: r["scenario"]),
    ("acked writes", lambda r: str(r["total"]["writes_acknowledged"])),
    ("acked writes lost", lambda r: f"{r['total']['writes_lost']} ({r['writes_lost_pct']:g} %)"),
    ("lost on minority", lambda r: f"{r['sides']['minority']['writes_lost']} of "
                                   f"{r['sides']['minority']['writes_acknowledged']}"),
    ("minority, acked during the partition: lost", lambda r: "{lost} of {acknowledged}".format(
        **r["partition_writes"]["minority"])),
    ("logins lost", lambda r: f"{r['total']['logins_lost']} of {r['total']['logins_acknowledged']}"),
    ("unconfirmed (writes, logins)", lambda r: f"{r['total']['writes_unconfirmed']}, "
                                               f"{r['total']['logins_unconfirmed']}"),
    ("presence lost", lambda r: f"{r['total']['presence_lost']} of {r['total']['heartbeats_acknowledged']}"),
    ("refused, minority", lambda r: _refused_cell(r, "minority")),
    ("refused, majority", lambda r: _refused_cell(r, "majority")),
    ("outcome unknown", lambda r: str(r["unknown"])),
    ("promoted after", lambda r: "never" if r["marks"].get("promoted") is None
     else f"{r['marks']['promoted'] - r['marks']['partition']:.1f} s"),
    ("converged after heal", lambda r: "never" if r["convergence_s"] is None else f"{r['convergence_s']:.1f} s"),
]


def _refused_cell(result, side):
    """The side's refusals, and by kind: "59 (54 write, 5 login)"."""
    kinds = result["refused_by_kind"][side]
    detail = f" ({', '.join(f'{n} {what}' for what, n in sorted(kinds.items()))})" if kinds else ""
    return f"{result['refused'][side]}{detail}"


def table(results):
    """The figures as one Table (reports/tables.py)."""
    return Table(tuple(COLUMNS), tuple(results))


def chart(result):
    """Per second, by side: the partition shaded, every mark a dashed line; the axis runs on to the last mark
    (the convergence)."""
    marks = {name: t for name, t in result["marks"].items() if t is not None}
    seconds = max(len(next(iter(result["timeline"].values()))), int(max(marks.values(), default=0)) + 2)
    series = {name: counts + [0] * (seconds - len(counts)) for name, counts in result["timeline"].items()}
    title = ", ".join(f"{name} {t:.0f} s" for name, t in marks.items())
    return series_chart(f"{result['scenario']}: per second ({title})", list(range(seconds)), series,
                        x_label="seconds since the scenario's start", unit="/s", width=640, legend_columns=2,
                        bands=[(marks["partition"], marks.get("heal"), "partition")] if "partition" in marks else [],
                        markers=[(t, name) for name, t in marks.items()])


def headline(results):
    return "; ".join(f"{r['scenario']}: {r['total']['writes_lost']} of {r['total']['writes_acknowledged']} "
                     f"acknowledged writes lost ({r['writes_lost_pct']:g} %)" for r in results)
