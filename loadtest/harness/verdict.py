"""A hypothesis as checks on a run's figures, each with the range it predicts, and the verdict on it.

Chaos Toolkit's steady-state hypothesis, stated the Jepsen way: what the
lesson predicts, bad outcomes included ("asynchronous Redis under a split:
90-100 % of the minority's writes acknowledged during the partition lost"),
as a range for one figure. A check is met when the figure was measured and
lies in its range; the hypothesis held when every check was met. The
verdict goes into run.json, leads the page, ends the terminal output, and
sets the command's exit status (verdict.exit_status).
"""

from dataclasses import dataclass
from html import escape


@dataclass(frozen=True)
class Check:
    """`statement`: the prediction in words; `figure`: where in the scenario's figures; [low, high] the range."""

    scenario: str
    statement: str
    figure: str  # a path into the figures: "windows.after promotion.lost_pct"
    low: float
    high: float | None  # None: no upper bound

    def judge(self, figures):
        observed = _lookup(figures, self.figure)
        if isinstance(observed, bool):
            observed = int(observed)
        met = isinstance(observed, int | float) and self.low <= observed and (self.high is None
                                                                              or observed <= self.high)
        return {"scenario": self.scenario, "statement": self.statement, "figure": self.figure,
                "predicted": [self.low, self.high], "observed": observed, "met": met}


def judge(checks, figures_by_scenario):
    """The verdict: every check of a scenario that ran, judged on that scenario's figures."""
    judged = [check.judge(figures_by_scenario[check.scenario]) for check in checks
              if check.scenario in figures_by_scenario]
    return {"held": all(c["met"] for c in judged), "checks": judged}


def exit_status(verdict):
    """0 when the hypothesis held, 3 when it did not (1 stays the status of a run that failed to run)."""
    return 0 if verdict["held"] else 3


def lines(verdict):
    """The verdict as terminal lines: one per check, then the outcome."""
    out = [f"{'met    ' if c['met'] else 'NOT MET'} {c['scenario']}: {c['statement']} "
           f"(predicted {_range(c['predicted'])}, observed {_value(c['observed'])})" for c in verdict["checks"]]
    out.append("hypothesis held" if verdict["held"] else
               f"hypothesis did NOT hold: {sum(not c['met'] for c in verdict['checks'])} check(s) not met")
    return out


def ended(out, verdict):
    """Print the verdict and where the page is; return the exit status that says whether the hypothesis held."""
    print("\n" + "\n".join(lines(verdict)))
    print(f"\nreport: {out / 'report.html'}")
    return exit_status(verdict)


def html(verdict):
    """The verdict as the page's first section: the outcome, then a table of the checks."""
    rows = "".join(
        f"<tr class={'met' if c['met'] else 'unmet'}><td>{'met' if c['met'] else 'NOT MET'}</td>"
        f"<td>{escape(c['scenario'])}</td><td>{escape(c['statement'])}</td>"
        f"<td>{escape(_range(c['predicted']))}</td><td>{escape(_value(c['observed']))}</td></tr>"
        for c in verdict["checks"])
    outcome = "The hypothesis held." if verdict["held"] else "The hypothesis did NOT hold."
    return (f"<p class=verdict>{outcome}</p><table><thead><tr><th scope=col>check</th><th scope=col>scenario</th>"
            f"<th scope=col>predicted</th><th scope=col>range</th><th scope=col>observed</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")


def _lookup(figures, path):
    value = figures
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _range(predicted):
    low, high = predicted
    if high is None:
        return f"at least {low:g}"
    return f"{low:g}" if low == high else f"{low:g} to {high:g}"


def _value(observed):
    return "not measured" if observed is None else f"{observed:g}" if isinstance(observed, int | float) else str(
        observed)
