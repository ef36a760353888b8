"""etcd under loss: what a 5-member majority store still does with members killed, or cut off.

`python -m loadtest etcd-loss --mode`:

- `members` (the default): a fresh etcd cluster per row, the leader and
  then other members killed, and etcd's own calls through a member still
  alive: writes, linearizable reads (through the leader) and serializable
  reads (the member's local copy): etcd_members.py.
- `site`: the deployed site (`deploy up --sessions etcd`), over HTTP
  through HAProxy, as users see it. One cluster; members are killed one at
  a time, the leader first; per row, logins, session reads and session
  writes, each by a different user, one request at a time. A read is stale
  if it returns an older counter than the last write acknowledged to that
  user. At the end the killed members are started again and every user's
  counter is read back: an acknowledged write that is not there is lost
  (etcd_site.py).
- `partition`: a 2 | 3 split between members, each in a network namespace
  of its own (deploy/netns.py): etcd_split.py.

Every mode records its run as history.jsonl (one scenario per row or
split, each call or request an operation, each member killed or started
and each cut and heal a fault), and report() computes MODE.json and the
page from it alone, so `python -m loadtest recheck` reproduces them.
"""

import json
from pathlib import Path

from loadtest.experiments.etcd_members import member_losses, member_rows, member_table
from loadtest.experiments.etcd_site import site_figures, site_losses, site_table
from loadtest.experiments.etcd_split import partition_splits, split_rows, split_table, split_timings
from loadtest.harness import history
from loadtest.harness.checkers import parameters
from loadtest.reports import page, tables

NAME = "etcd-loss"
HELP = "what a 5-member etcd does with 0 to 3 members killed, or split 2 | 3"
INDEXED = True  # its report is listed in results/index.html
MODES = ("members", "site", "partition")


def add_arguments(parser):
    parser.add_argument("--mode", choices=MODES, default="members",
                        help="members: etcd's own calls with members killed; site: logins and session reads and "
                             "writes through the deployed site (deploy up --sessions etcd); partition: a 2 | 3 "
                             "split between members in network namespaces")
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--tries", type=int,
                        help="requests of each kind per row (default: 10 through the site, else 20)")
    parser.add_argument("--out", type=Path, help="output folder (default: results/etcd-loss-MODE)")


def main(args):
    if args.out is None:
        args.out = Path("results") / f"etcd-loss-{args.mode}"
    args.out.mkdir(parents=True, exist_ok=True)
    tries = args.tries or (10 if args.mode == "site" else 20)
    # Microseconds: a serializable read takes about a millisecond, and its median is a figure.
    with history.History(args.out / history.FILE, experiment=NAME, command=args.run.command, digits=6) as recorded:
        recorded.sample(condition="started", parameters={"mode": args.mode, "members": args.members, "tries": tries})
        if args.mode == "partition":
            partition_splits(members=args.members, tries=tries, history=recorded)
        elif args.mode == "members":
            member_losses(members=args.members, tries=tries, history=recorded)
        else:
            site_losses(members=args.members, tries=tries, state_dir=args.out / "cluster", history=recorded)
    print(report(args.out, args.run)[0])
    print(f"\nreport: {args.out / 'report.html'}")
    return 0


FIGURES = {"members": member_rows, "site": site_figures, "partition": split_rows}


def report(out, run, *, finished=None):
    """From out/history.jsonl alone: the mode's figures, MODE.json and the page; (the tables as text, None).

    The run and `python -m loadtest recheck` both call it. No verdict: what
    the lesson predicts is on the experiment's page beside the figures, and
    the exit status never depended on it.
    """
    out = Path(out)
    _, events = history.load(out / history.FILE)
    mode = parameters(events)["mode"]
    figures = FIGURES[mode](events)
    (out / f"{mode}.json").write_text(json.dumps(figures, indent=1))
    return write(out, run, {"mode": mode, "figures": figures}, finished=finished), None


TITLES = {"members": "etcd with members killed: what a majority store still does",
          "site": "The site on etcd with members killed: what users see",
          "partition": "etcd split 2 | 3: which side serves"}


def parts(mode, figures):
    """The mode's tables and lines (reports/tables.py), as the terminal and the page show them."""
    if mode == "members":
        return [member_table(figures)]
    if mode == "partition":
        return [*split_table(figures), *split_timings(figures)]
    loss = figures["leader_loss"]
    return [
        site_table(figures),
        f"after the leader's kill: the first session read served {loss['served_after_s']} s later; "
        f"{loss['failed']} failed before it ({loss['failed_etcd_503']} of them 503s naming etcd, "
        f"the slowest {loss['failed_max_ms']} ms)",
        f"killed members started again: {figures['lost_after_restart']} of {figures['writers']} users had lost "
        f"an acknowledged session write ({figures['acknowledged_writes']} acknowledged in all, "
        f"{figures['unconfirmed_writes']} unconfirmed)"]


def headline(mode, figures):
    if mode == "members":
        return "; ".join(f"{r['gone']} of {r['members']} killed: {r['write']['ok']}/{r['write']['tries']} writes"
                         for r in figures)
    if mode == "partition":
        return "; ".join(f"leader on the {s['leader_side']} side: the large side elected a leader in "
                         f"{s['leader_elected_s']:g} s, "
                         f"{s['during']['small']['write']['ok']}/{s['during']['small']['write']['tries']} writes "
                         "on the small side" for s in figures)
    return (f"{figures['lost_after_restart']} of {figures['writers']} users lost an acknowledged session write; "
            f"the site served again {figures['leader_loss']['served_after_s']} s after the leader's kill")


def write(out, run, figures, *, finished=None):
    """report.html and run.json in out (loadtest/reports/page.py) from the mode and its figures; return the text."""
    mode, figures = figures["mode"], figures["figures"]
    shown = parts(mode, figures)
    page.write(out, run, title=TITLES[mode], headline=headline(mode, figures), finished=finished,
               sections=[("", page.paragraphs(f"Figures: {mode}.json beside this page, computed from "
                                              f"history.jsonl (recheck: python -m loadtest recheck {out}).")),
                         ("", tables.html(shown))])
    return tables.markdown(shown)
