"""One table model for every report: columns over rows, rendered to HTML for the page and Markdown for text.

A Table is its columns, each a header and a cell function of a row, and
its rows; `title` and `caption` make the line above it ("**title**:
caption"). The same Table is rendered to the page (`html`) and to the
terminal and the summary files (`markdown`), so no Markdown is ever parsed
back into HTML, and a figure cannot differ between the two.
"""

from dataclasses import dataclass
from html import escape
from operator import itemgetter


@dataclass(frozen=True)
class Table:
    columns: tuple  # (header, cell) pairs: cell(row) -> the cell's text
    rows: tuple
    title: str = ""  # bold, before the caption
    caption: str = ""

    @classmethod
    def of(cls, header, rows, **line):
        """A table of cell texts already made: header names, and rows of cells in their order."""
        return cls(tuple((name, itemgetter(i)) for i, name in enumerate(header)), tuple(rows), **line)

    @property
    def header(self):
        return [name for name, _ in self.columns]

    def cells(self):
        return [[str(cell(row)) for _, cell in self.columns] for row in self.rows]

    def markdown(self):
        line = ": ".join(part for part in (self.title and f"**{self.title}**", self.caption) if part)
        table = ["| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.columns)]
        table += ["| " + " | ".join(row) + " |" for row in self.cells()]
        return "\n".join([line, "", *table] if line else table)

    def html(self):
        line = ": ".join(part for part in (self.title and f"<b>{escape(self.title)}</b>", escape(self.caption))
                         if part)
        head = "".join(f"<th scope=col>{escape(name)}</th>" for name in self.header)
        body = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in self.cells())
        return (f"<p>{line}</p>" if line else "") + \
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def markdown(tables):
    """Tables as Markdown, a blank line between them (a string stands for a paragraph of its own)."""
    return "\n\n".join(t if isinstance(t, str) else t.markdown() for t in tables)


def html(tables):
    """Tables as HTML, in order (a string stands for a paragraph of its own)."""
    return "".join(f"<p>{escape(t)}</p>" if isinstance(t, str) else t.html() for t in tables)
