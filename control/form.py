"""What the page's controls are built from: deploy up's and the experiments' own argument definitions, and the
fault vocabulary.

Nothing is listed twice: an option added to `deploy up`
(deploy/options.py) or an action added to deploy.cluster.ACTIONS appears
on the page without a change here.
"""

import argparse

from deploy import cluster as deploy


def up_fields():
    """Each option of `deploy up`: its key in POST /api/actions, its flag, help, default, and kind of input."""
    parser = argparse.ArgumentParser(add_help=False)
    deploy.add_up_arguments(parser)
    return fields_of(parser)


def fields_of(parser):
    """Each long option of an argparse parser, as fields of a form (the keys of POST /api/actions)."""
    fields = []
    for action in parser._actions:
        flag = action.option_strings[-1] if action.option_strings else ""
        if not flag.startswith("--") or action.dest == "help":
            continue
        if action.nargs == 0:
            kind, default = "flag", False
        elif isinstance(action, argparse._AppendAction):
            kind, default = "list", ""
        else:
            kind = "number" if action.type in (int, float) else "text"
            default = "" if action.default is None else action.default
        fields.append({"key": flag[2:].replace("-", "_"), "flag": flag, "help": action.help or "",
                       "kind": kind, "default": default, "step": "any" if action.type is float else "1"})
    return fields


def fault_rows():
    """Each fault action: its name, whether it takes a target, and its fields with their types."""
    return [{"name": action.name, "target": action.target, "required": list(action.required),
             "fields": {key: kind.__name__ for key, kind in action.fields.items()}}
            for action in deploy.ACTIONS.values()]
