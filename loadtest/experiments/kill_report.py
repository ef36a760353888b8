"""Write the kill experiment's output: results.json, summary.md, the charts, and its page (loadtest/reports/page.py)."""

import json
from html import escape

from loadtest.experiments.capacity_report import capacity_tables
from loadtest.experiments.kill_cells import (
    columns_for,
    faults_text,
)
from loadtest.experiments.kill_readings import plain_reading, store_targets
from loadtest.experiments.kill_run import STORE_FAULTS
from loadtest.reports import page, tables
from loadtest.reports.svg import PALETTE, bar_chart, line_chart, share_chart
from loadtest.reports.tables import Table


def write(out, run, figures, *, finished=None):
    """results.json (the figures: plan, capacity, configs), summary.md, the charts and the page; return the summary.

    finished: when the run ended, if not now (a recheck)."""
    plan, capacities, results = figures["plan"], figures["capacity"], figures["configs"]
    verdict = figures.get("verdict")  # the rolling restart's, when it ran
    charts = out / "charts"
    charts.mkdir(parents=True, exist_ok=True)
    timelines = {r["config"]["name"]: timeline_svg(r) for r in results}
    for name, svg in timelines.items():
        (charts / f"timeline-{name.replace('+', '-')}.svg").write_text(svg)
    bars = bars_svgs(results)
    for key, svg in bars.items():
        (charts / f"{key}.svg").write_text(svg)

    (out / "results.json").write_text(json.dumps({"plan": plan, "capacity": list(capacities), "configs": results},
                                                 indent=1))
    summary = Table(tuple(columns_for(results)), tuple(results)).markdown()
    reading = plain_reading(results, plan["faults"])
    targets = store_targets(results, plan["faults"])
    if targets:
        summary += "\n\n" + "\n".join(f"- {'met' if t['met'] else 'NOT met'}: {t['target']} ({t['figure']})"
                                       for t in targets)
    capacity = f"\n\n## Capacity steps\n\n{tables.markdown(capacity_tables(capacities))}" if capacities else ""
    (out / "summary.md").write_text(
        f"# {_title(plan)}\n\n{_plan_line(plan)}\n\n{summary}\n\n" + "\n".join(f"- {line}" for line in reading)
        + capacity + "\n"
    )
    page.write(out, run, title=_page_title(plan), headline=headline(plan, results), verdict=verdict, finished=finished,
               sections=report_sections(plan, results, reading, bars, timelines, capacities))
    return summary


def timeline_svg(result):
    t = result["timeline"]
    markers = [(f["at"], f"{f['action']} {f['target']}") for f in result["faults"]]
    bands = fault_bands(result["faults"])
    panels = [
        ("requests/s", t["requests"], PALETTE[0], ""),
        ("failed requests/s", t["failures"], PALETTE[1], ""),
        ("sessions lost/s", t["sessions_lost"], PALETTE[4], ""),
        ("p95 latency", t["p95_ms"], PALETTE[3], " ms"),
    ]
    height = 120
    inner = [
        f'<g transform="translate(0 {i * height})">'
        + line_chart(title, t["t"], values, markers=markers, bands=bands, color=color, unit=unit, height=height)
        + "</g>"
        for i, (title, values, color, unit) in enumerate(panels)
    ]
    total = height * len(panels)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 640 {total}" width="640" height="{total}">'
            + "".join(inner) + "</svg>")


ENDS = {"kill": "start", "term": "start", "pause": "resume", "scale": "scale"}  # a fault, and what ends it


def fault_bands(faults):
    """[(start, end, label)]: how long each fault lasted, from it to what ended it (the same target started
    again, resumed, or the instances scaled back); a fault never ended lasts to the end of the chart."""
    bands = []
    for i, fault in enumerate(faults):
        if fault["action"] not in ENDS:
            continue
        end = next((f["at"] for f in faults[i + 1:] if f["action"] == ENDS[fault["action"]]
                    and (fault["action"] == "scale" or f["target"] == fault["target"])), None)
        label = (f"{fault['target']} instances" if fault["action"] == "scale"
                 else f"{fault['target']} {'paused' if fault['action'] == 'pause' else 'down'}")
        bands.append((fault["at"], end, label))
    return bands


def bars_svgs(results):
    names = [r["config"]["name"] for r in results]

    def rows(key):
        return list(zip(names, (r[key] for r in results)))

    accuracy = [(n, None if r["presence_accuracy"] is None else 100 * r["presence_accuracy"])
                for n, r in zip(names, results)]
    store = {}
    if any(r.get("store") for r in results):
        store = {
            "session-writes-lost": bar_chart("Acknowledged session writes lost",
                                             [(n, r["store"]["writes_lost"]) for n, r in zip(names, results)],
                                             color=PALETTE[4], digits=0),
            "logins-lost": bar_chart("Acknowledged logins lost",
                                     [(n, r["store"]["logins_lost"]) for n, r in zip(names, results)],
                                     color=PALETTE[4], digits=0),
            "failover": bar_chart("Failover time (fault to requests succeeding again)",
                                  [(n, r["store"]["failover_s"]) for n, r in zip(names, results)],
                                  unit=" s", color=PALETTE[3]),
        }
    return {
        **store,
        "users-lost-session": bar_chart("Users who lost their session", rows("users_lost_session_pct"),
                                        unit="%", color=PALETTE[4], digits=0),
        "failed-requests": bar_chart("Failed requests", rows("failed_pct"), unit="%", color=PALETTE[1], digits=2),
        "p50-latency": bar_chart("p50 latency", rows("p50_ms"), unit=" ms", color=PALETTE[3]),
        "p99-latency": bar_chart("p99 latency", rows("p99_ms"), unit=" ms", color=PALETTE[3]),
        "messages-lost": bar_chart("Acknowledged messages lost or duplicated",
                                   [(n, r["messages_lost"] + r["messages_duplicated"]) for n, r in zip(names, results)],
                                   color=PALETTE[1], digits=0),
        "presence-accuracy": bar_chart("Presence accuracy", accuracy, unit="%", color=PALETTE[2], digits=0),
        "instance-share": share_chart("Each instance's share of requests",
                                      [(n, r["served_share"]) for n, r in zip(names, results)]),
    }


def report_sections(plan, results, reading, bars, timelines, capacities=()):
    """The kill experiment's page below its title: the plan, the reading, the targets, the table, the charts."""
    sections = "".join(
        f"<section class=config><h3>{escape(r['config']['name'])}</h3>"
        f"<p class=meta>sessions {escape(r['config']['sessions'])}, presence {escape(r['config']['presence'])}, "
        f"load balancing {escape(r['config']['lb'])}; faults: "
        f"{escape(faults_text(r['faults']))}</p>"
        f"{timelines[r['config']['name']]}</section>"
        for r in results
    )
    targets = store_targets(results, plan["faults"])
    return [
        ("", f"<p class=meta>{escape(_plan_line(plan))}</p>"),
        ("Reading", page.bullets(reading)),
        ("Targets" if targets else "", page.bullets(
            f"{'met' if t['met'] else 'NOT met'}: {t['target']} ({t['figure']})" for t in targets) if targets else ""),
        ("Capacity steps" if capacities else "", tables.html(capacity_tables(capacities))),
        ("Side by side", Table(tuple(columns_for(results)), tuple(results)).html() + page.charts(bars.values())),
        ("Timelines", "<p class=meta>Time 0 is the end of the warm-up; dashed lines mark the faults.</p>"
                      f"<div class=configs>{sections}</div>"),
    ]


def headline(plan, results):
    """The figure that matters, per configuration: acknowledged writes lost, or users who lost their session."""
    if plan["faults"] in STORE_FAULTS:
        return "; ".join(f"{r['config']['name']}: {r['store']['writes_lost']} of {r['store']['writes_acknowledged']} "
                         "acknowledged session writes lost" for r in results)
    return "; ".join(f"{r['config']['name']}: {r['users_lost_session_pct']:.0f} % of users lost their session"
                     for r in results)


def _page_title(plan):
    return f"What happens to users when {'the store fails' if plan['faults'] in STORE_FAULTS else 'an instance dies'}"


def _title(plan):
    return "Store-failure experiment" if plan["faults"] in STORE_FAULTS else "Kill experiment"


def _plan_line(plan):
    users = f"{plan['users']} users" if plan["users"] else f"users at {plan['load']:.0%} of each capacity step"
    return (f"{users}, {plan['duration']:g} s measured after {plan['warmup']:g} s warm-up (only requests that "
            f"started inside it count), {plan['instances']} instances, fault schedule '{plan['faults']}', "
            f"on {plan['machine']}.")
