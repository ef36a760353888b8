"""Small, dependency-free SVG charts for the report: lines over time and bars.

Every timeline shows its faults the same way: the time a fault lasted as
a shaded band across the plot (`bands`: [(start, end, label)]), and every
event, a band's edges too, as a dashed line with its name (`markers`). Axes carry
their units, and legends sit below the plot, never over the data.
"""

from html import escape

BAND = "#f6d5cf"  # a fault's time, shaded behind the data
PALETTE = ["#1f5fbf", "#c0392b", "#2e8b57", "#8e44ad", "#d35400", "#16a085", "#7f8c8d", "#b7950b"]
FONT = 'font-family="system-ui, sans-serif"'


def _nice_max(value):
    if not value or value <= 0:
        return 1
    for magnitude in range(-3, 7):
        for step in (1, 2, 2.5, 5):
            top = step * 10**magnitude
            if top >= value:
                return top
    return value


def _fmt(value):
    return f"{value:g}" if value < 10000 else f"{value / 1000:g}k"


def _open(width, height, title, title_x=0):
    """The start of a chart: its box, a white background (for dark pages) and its name."""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="{escape(title)}">'
            '<rect width="100%" height="100%" fill="#fff"/>'
            f'<text x="{title_x}" y="14" font-size="12" font-weight="600" {FONT}>{escape(title)}</text>')


def _row_label(right, y, label):
    return f'<text x="{right}" y="{y + 14}" font-size="11" text-anchor="end" {FONT}>{escape(label)}</text>'


class _Plot:
    """A chart's drawing area: data to pixels, and the horizontal grid with its labels."""

    def __init__(self, xs, values, *, width, height, left, right, top, bottom):
        self.left, self.right, self.top, self.width = left, right, top, width
        self.plot_w, self.plot_h = width - left - right, height - top - bottom
        self.x0, self.x1 = xs[0], xs[-1] if xs[-1] != xs[0] else xs[0] + 1
        self.y_max = _nice_max(max((v for v in values if v is not None), default=0))

    def px(self, x):
        return self.left + (x - self.x0) / (self.x1 - self.x0) * self.plot_w

    def py(self, y):
        return self.top + self.plot_h - y / self.y_max * self.plot_h

    def grid(self, unit):
        parts = []
        for fraction in (0, 0.5, 1):
            y = self.py(self.y_max * fraction)
            parts.append(f'<line x1="{self.left}" x2="{self.width - self.right}" y1="{y:.1f}" y2="{y:.1f}" '
                         'stroke="#e3e7ee"/>')
            parts.append(f'<text x="{self.left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end" '
                         f'fill="#5b6575" {FONT}>{_fmt(self.y_max * fraction)}{unit}</text>')
        return parts

    def bands(self, bands):
        """Shaded rectangles across the plot for [(start, end, label)], clipped to it, drawn behind the data; the
        label is the band's tooltip, its edges being the dashed markers that name them."""
        parts = []
        for start, end, label in bands:
            a, b = max(start, self.x0), min(end if end is not None else self.x1, self.x1)
            if a >= b:
                continue
            parts.append(f'<rect x="{self.px(a):.1f}" y="{self.top}" width="{self.px(b) - self.px(a):.1f}" '
                         f'height="{self.plot_h}" fill="{BAND}"><title>{escape(label)}</title></rect>')
        return parts

    def markers(self, markers):
        """Dashed vertical lines at [(x, label)] inside the plot; labels step down so that close marks stay readable."""
        parts = []
        inside = sorted((x, label) for x, label in markers if self.x0 <= x <= self.x1)
        for i, (x, label) in enumerate(inside):
            mx = self.px(x)
            parts.append(f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{self.top}" y2="{self.top + self.plot_h}" '
                         'stroke="#444" stroke-dasharray="4 3"/>')
            # A mark near the right edge takes its label to its left, inside the chart.
            x, anchor = (mx - 3, "end") if mx > self.width - self.right - 80 else (mx + 3, "start")
            parts.append(f'<text x="{x:.1f}" y="{self.top + 10 + 11 * (i % 3)}" font-size="10" fill="#444" '
                         f'text-anchor="{anchor}" {FONT}>{escape(label)}</text>')
        return parts


def line_chart(title, xs, values, *, markers=(), bands=(), color=PALETTE[0], width=640, height=120, unit=""):
    """One series over time (x in seconds), with faults as bands [(start, end, label)] and markers [(x, label)];
    None values leave gaps."""
    left, top = 48, 22
    plot = _Plot(xs, values, width=width, height=height, left=left, right=10, top=top, bottom=20)
    px, py, x0, x1 = plot.px, plot.py, plot.x0, plot.x1
    parts = [_open(width, height, title, title_x=left), *plot.bands(bands), *plot.grid(unit),
             *plot.markers(markers)]
    segments, current = [], []
    for x, y in zip(xs, values):
        if y is None:
            if current:
                segments.append(current)
            current = []
        else:
            current.append(f"{px(x):.1f},{py(y):.1f}")
    if current:
        segments.append(current)
    for points in segments:
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{" ".join(points)}"/>')
    for x in (x0, 0, x1):
        if x0 <= x <= x1:
            parts.append(f'<text x="{px(x):.1f}" y="{height - 5}" font-size="10" text-anchor="middle" '
                         f'fill="#5b6575" {FONT}>{x:g} s</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def bar_chart(title, rows, *, unit="", width=420, color=PALETTE[0], digits=1):
    """Horizontal bars: rows of (label, value); None shows as 'n/a'."""
    left, row_h, top = 130, 22, 24
    plot_w = width - left - 60
    height = top + row_h * len(rows) + 6
    top_value = _nice_max(max((v for _, v in rows if v is not None), default=0))
    parts = [_open(width, height, title)]
    for i, (label, value) in enumerate(rows):
        y = top + i * row_h
        parts.append(_row_label(left - 6, y, label))
        if value is None:
            parts.append(f'<text x="{left + 4}" y="{y + 14}" font-size="11" fill="#5b6575" {FONT}>n/a</text>')
            continue
        bar = value / top_value * plot_w
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{max(bar, 1):.1f}" height="{row_h - 7}" '
                     f'fill="{color}" rx="2"/>')
        parts.append(f'<text x="{left + bar + 4:.1f}" y="{y + 14}" font-size="11" {FONT}>'
                     f'{value:.{digits}f}{unit}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def share_chart(title, rows, *, width=420):
    """Stacked horizontal bars of shares: rows of (label, {part: fraction})."""
    left, row_h, top = 130, 22, 24
    plot_w = width - left - 10
    names = sorted({name for _, shares in rows for name in shares}, key=lambda n: (len(n), n))
    colors = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}
    height = top + row_h * len(rows) + 24
    parts = [_open(width, height, title)]
    for i, (label, shares) in enumerate(rows):
        y = top + i * row_h
        parts.append(_row_label(left - 6, y, label))
        x = left
        for name in names:
            w = shares.get(name, 0) * plot_w
            if w > 0:
                parts.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row_h - 7}" '
                             f'fill="{colors[name]}"><title>{escape(name)}: {shares[name]:.0%}</title></rect>')
                if w > 30:
                    parts.append(f'<text x="{x + w / 2:.1f}" y="{y + 14}" font-size="10" fill="#fff" '
                                 f'text-anchor="middle" {FONT}>{shares[name]:.0%}</text>')
            x += w
    legend_y = top + row_h * len(rows) + 14
    for i, name in enumerate(names):
        lx = left + i * 60
        parts.append(f'<rect x="{lx}" y="{legend_y - 9}" width="10" height="10" fill="{colors[name]}"/>')
        parts.append(f'<text x="{lx + 14}" y="{legend_y}" font-size="10" {FONT}>{escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def series_chart(title, xs, series, *, x_label, unit="", width=420, height=200, legend_columns=3, markers=(),
                 bands=()):
    """Several series over the same xs, as lines with dots and a legend below the plot: series is {name: values}.

    bands: [(start, end, label)], a fault's time shaded across the plot; markers: [(x, label)], single events
    as dashed vertical lines.
    """
    legend_rows = -(-len(series) // legend_columns)
    height += 14 * (legend_rows - 1)
    left, top = 44, 22
    plot = _Plot(xs, [v for values in series.values() for v in values], width=width, height=height,
                 left=left, right=10, top=top, bottom=30 + 14 * legend_rows)
    px, py, plot_w, plot_h = plot.px, plot.py, plot.plot_w, plot.plot_h
    parts = [_open(width, height, title, title_x=left), *plot.bands(bands), *plot.grid(unit), *plot.markers(markers)]
    for x in xs:
        parts.append(f'<text x="{px(x):.1f}" y="{top + plot_h + 13}" font-size="10" text-anchor="middle" '
                     f'fill="#5b6575" {FONT}>{x:g}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h + 26}" font-size="10" text-anchor="middle" '
                 f'fill="#5b6575" {FONT}>{escape(x_label)}</text>')
    for i, (name, values) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        points = [(px(x), py(v)) for x, v in zip(xs, values) if v is not None]
        if points:
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6" '
                         f'points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in points)}"/>')
            parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}"/>' for x, y in points]
        lx = left + (i % legend_columns) * ((width - left) // legend_columns)
        ly = top + plot_h + 34 + 14 * (i // legend_columns)
        parts.append(f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{lx + 14}" y="{ly}" font-size="10" {FONT}>{escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def marks_chart(title, marks, *, width=640, unit=" s"):
    """Events on one time axis: marks is {label: x}; None (never happened) is listed under the axis."""
    happened = sorted((x, label) for label, x in marks.items() if x is not None)
    never = [label for label, x in marks.items() if x is None]
    left, right, axis_y = 20, 20, 40 + 16 * len(happened)
    height = axis_y + 30 + (16 if never else 0)
    x0, x1 = (happened[0][0], happened[-1][0]) if happened else (0, 1)
    span = (x1 - x0) or 1
    parts = [_open(width, height, title, title_x=left),
             f'<line x1="{left}" x2="{width - right}" y1="{axis_y}" y2="{axis_y}" stroke="#5b6575"/>']
    for i, (x, label) in enumerate(happened):
        mx = left + (x - x0) / span * (width - left - right)
        anchor = "end" if mx > width / 2 else "start"
        text_x = mx - 4 if anchor == "end" else mx + 4
        parts.append(f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{28 + 16 * i}" y2="{axis_y}" stroke="#444" '
                     'stroke-dasharray="4 3"/>')
        parts.append(f'<circle cx="{mx:.1f}" cy="{axis_y}" r="3" fill="{PALETTE[i % len(PALETTE)]}"/>')
        parts.append(f'<text x="{text_x:.1f}" y="{32 + 16 * i}" font-size="11" text-anchor="{anchor}" {FONT}>'
                     f'{escape(label)} ({x - x0:+.1f}{unit})</text>')
    for x in (x0, x1) if happened else ():
        mx = left + (x - x0) / span * (width - left - right)
        parts.append(f'<text x="{mx:.1f}" y="{axis_y + 14}" font-size="10" text-anchor="middle" fill="#5b6575" '
                     f'{FONT}>{x - x0:g}{unit}</text>')
    if never:
        parts.append(f'<text x="{left}" y="{axis_y + 32}" font-size="11" fill="#c0392b" {FONT}>'
                     f'never: {escape(", ".join(never))}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
