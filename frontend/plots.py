"""Small server-side SVG plots for the manager pages (no JavaScript, no CDN)."""

from __future__ import annotations

from django.utils.html import escape
from django.utils.safestring import mark_safe


def bar_chart(counts: dict[str, int], *, title: str, width: int = 360, height: int = 180):
    """A histogram: one bar per key (e.g. rating 1..N)."""
    keys = list(counts)
    top = max(counts.values(), default=0) or 1
    left, bottom, pad = 34, 26, 12
    plot_w, plot_h = width - left - pad, height - bottom - pad - 16
    bar_w = plot_w / max(len(keys), 1)
    parts = [f'<svg class="svgplot" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
             f'<text x="{left}" y="14" font-size="12" font-weight="600" fill="#1d232b">{escape(title)}</text>']
    for frac in (0, .5, 1):
        y = pad + 16 + plot_h * (1 - frac)
        parts.append(f'<line x1="{left}" x2="{width - pad}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e8ee"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end" fill="#5f6b7a">'
                     f'{round(top * frac)}</text>')
    for index, key in enumerate(keys):
        value = counts[key]
        h = plot_h * value / top
        x = left + index * bar_w + bar_w * .15
        y = pad + 16 + plot_h - h
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w * .7:.1f}" height="{h:.1f}" rx="3" fill="#2f6fde">'
                     f'<title>{escape(key)}: {value}</title></rect>'
                     f'<text x="{x + bar_w * .35:.1f}" y="{height - 8}" font-size="11" text-anchor="middle" '
                     f'fill="#5f6b7a">{escape(key)}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))


def line_chart(points: list[tuple[float, float | None]], *, title: str, y_min: float = -0.2, y_max: float = 1.0,
               x_label: str = "submissions", width: int = 360, height: int = 180,
               guides: tuple[float, ...] = (0.667, 0.8), empty: str = "not enough overlapping answers yet"):
    """A line of (x, y) points, e.g. Krippendorff's alpha as submissions come in. `guides` are
    values drawn as amber lines (thresholds, goals); the range grows to fit the points."""
    known = [(x, y) for x, y in points if y is not None]
    left, bottom, pad = 34, 26, 12
    plot_w, plot_h = width - left - pad, height - bottom - pad - 16
    parts = [f'<svg class="svgplot" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
             f'<text x="{left}" y="14" font-size="12" font-weight="600" fill="#1d232b">{escape(title)}</text>']
    if known:
        y_min = min(y_min, min(y for _, y in known))
        y_max = max(y_max, max(y for _, y in known))
    xs = [x for x, _ in points] or [0, 1]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1

    def sx(x):
        return left + plot_w * (x - x0) / (x1 - x0)

    def sy(y):
        return pad + 16 + plot_h * (1 - (y - y_min) / (y_max - y_min))

    for tick in sorted({0.0, 1.0, y_max, *guides}):
        if y_min <= tick <= y_max:
            colour = "#f0c36d" if tick in guides else "#e3e8ee"
            parts.append(f'<line x1="{left}" x2="{width - pad}" y1="{sy(tick):.1f}" y2="{sy(tick):.1f}" stroke="{colour}"/>'
                         f'<text x="{left - 6}" y="{sy(tick) + 4:.1f}" font-size="10" text-anchor="end" '
                         f'fill="#5f6b7a">{tick:.3g}</text>')
    if known:
        path = " ".join(f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for i, (x, y) in enumerate(known))
        parts.append(f'<path d="{path}" fill="none" stroke="#2f6fde" stroke-width="2"/>')
        for x, y in known:
            parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="#2f6fde"><title>{x:g}: {y:.3f}</title></circle>')
    else:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" font-size="12" text-anchor="middle" fill="#5f6b7a">'
                     f'{escape(empty)}</text>')
    parts.append(f'<text x="{width - pad}" y="{height - 8}" font-size="10" text-anchor="end" fill="#5f6b7a">'
                 f'{escape(x_label)}</text></svg>')
    return mark_safe("".join(parts))
