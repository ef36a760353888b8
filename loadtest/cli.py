"""What the command modules share: the comma-separated lists their options take (names checked against their
choices), counts of at least one, and a ratio's spread."""

import argparse


def listed(text):
    """`"a, b,,c"` -> ["a", "b", "c"]: an option's comma-separated names, blanks dropped."""
    return [name.strip() for name in text.split(",") if name.strip()]


def ratio_text(ratio):
    """A ratio over rounds as "median (min-max)", two decimals each."""
    return f"{ratio['median']:.2f} ({ratio['min']:.2f}-{ratio['max']:.2f})"


def chosen(names, choices, what="scenario"):
    """The names, checked against the choices (an experiment's scenarios by default): ValueError naming the unknown
    ones and the choices."""
    unknown = [name for name in names if name not in choices]
    if unknown:
        raise ValueError(f"no {what} {', '.join(unknown)}; choose from: {', '.join(choices)}")
    return names


def at_least_one(text):
    """An option's count (rounds, repeats): an int of 1 or more, else argparse's usage error naming the option."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"at least 1, not {value}")
    return value


def names_of(choices, what):
    """An argparse type: an option's comma-separated names (listed()), each a key of `choices` (read as the option
    is parsed, so a row registered before then counts); else argparse's usage error naming the option, the
    unknown names and the choices."""

    def names(text):
        try:
            found = chosen(listed(text), choices, what)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        if not found:
            raise argparse.ArgumentTypeError(f"no {what} named; choose from: {', '.join(choices)}")
        return found

    return names
