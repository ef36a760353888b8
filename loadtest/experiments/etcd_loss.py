"""etcd under loss: what a 5-member majority store still does with members killed, or cut off.

`python -m loadtest etcd-loss --mode`:

- `members` (the default): a fresh etcd cluster per row, the leader and
  then other members killed, and etcd's own calls through a member still
  alive: writes, linearizable reads (through the leader) and serializable
  reads (the member's local copy).
- `site`: the deployed site (`deploy up --sessions etcd`), over HTTP
  through HAProxy, as users see it. One cluster; members are killed one at
  a time, the leader first; per row, logins, session reads and session
  writes, each by a different user, one request at a time. A read is stale
  if it returns an older counter than the last write acknowledged to that
  user. At the end the killed members are started again and every user's
  counter is read back: an acknowledged write that is not there is lost.
- `partition`: a 2 | 3 split between members, each in a network namespace
  of its own (deploy/netns.py); see `partition_splits`.
"""

import json
from pathlib import Path

from loadtest.experiments.etcd_members import member_losses, member_table, partition_splits, split_table, split_timings
from loadtest.experiments.etcd_site import site_losses, site_table
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
    if args.mode == "partition":
        figures = partition_splits(members=args.members, tries=args.tries or 20)
    elif args.mode == "members":
        figures = member_losses(members=args.members, tries=args.tries or 20)
    else:
        figures = site_losses(members=args.members, tries=args.tries or 10, state_dir=args.out / "cluster")
    (args.out / f"{args.mode}.json").write_text(json.dumps(figures, indent=1))
    print(write(args.out, args.run, {"mode": args.mode, "figures": figures}))
    print(f"\nreport: {args.out / 'report.html'}")
    return 0


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
        f"an acknowledged session write ({figures['acknowledged_writes']} acknowledged in all)"]


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


def write(out, run, figures):
    """report.html and run.json in out (loadtest/reports/page.py) from the mode and its figures; return the text."""
    mode, figures = figures["mode"], figures["figures"]
    shown = parts(mode, figures)
    page.write(out, run, title=TITLES[mode], headline=headline(mode, figures),
               sections=[("", page.paragraphs(f"Figures: {mode}.json beside this page.")), ("", tables.html(shown))])
    return tables.markdown(shown)
