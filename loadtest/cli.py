"""What the command modules share: the comma-separated lists their options take, and a ratio's spread."""


def listed(text):
    """`"a, b,,c"` -> ["a", "b", "c"]: an option's comma-separated names, blanks dropped."""
    return [name.strip() for name in text.split(",") if name.strip()]


def ratio_text(ratio):
    """A ratio over rounds as "median (min-max)", two decimals each."""
    return f"{ratio['median']:.2f} ({ratio['min']:.2f}-{ratio['max']:.2f})"


def chosen(names, choices):
    """The scenarios named, checked against the experiment's: ValueError naming the unknown ones and the choices."""
    unknown = [name for name in names if name not in choices]
    if unknown:
        raise ValueError(f"no scenario {', '.join(unknown)}; choose from: {', '.join(choices)}")
    return names
