"""Self-contained HTML pages: tables, key-value lists, figures."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Section:
    """One section of a report page: a heading and its HTML body."""

    heading: str
    body: str
    anchor: str | None = None


def _format_value(value, fmt: str | None = None) -> str:
    if value is None:
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return format(int(value), fmt or "d")
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(float(value)):
            return "–"
        if fmt:
            return format(float(value), fmt)
        v = abs(float(value))
        return format(float(value), ".3g" if (v and (v < 0.01 or v >= 1e5)) else ",.4g")
    return str(value)


def html_table(
    table: pd.DataFrame,
    *,
    columns: Mapping[str, str] | Sequence[str] | None = None,
    formats: Mapping[str, str] | None = None,
    caption: str | None = None,
) -> str:
    """An HTML table of a DataFrame, values escaped, NaN shown as "–".

    Parameters
    ----------
    table : pandas.DataFrame
    columns : mapping column -> heading, or sequence of columns, optional
        Which columns to show and how to head them (default: all, by name).
    formats : mapping column -> format spec, optional
        E.g. ``{"volume_nm3": ".3g", "f1": ".1%"}``; default a few significant digits.
    caption : str, optional
    """
    if columns is None:
        columns = {c: c for c in table.columns}
    elif not isinstance(columns, Mapping):
        columns = {c: c for c in columns}
    formats = dict(formats or {})
    parts = ["<table>"]
    if caption:
        parts.append(f"<caption>{html.escape(caption)}</caption>")
    parts.append(
        "<thead><tr>"
        + "".join(f"<th>{html.escape(str(h))}</th>" for h in columns.values())
        + "</tr></thead><tbody>"
    )
    for _, row in table.iterrows():
        cells = []
        for c in columns:
            value = row[c] if c in row.index else None
            text = html.escape(_format_value(value, formats.get(c)))
            numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
                value, (bool, np.bool_)
            )
            cells.append(f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    if table.empty:
        parts.append(f'<tr><td colspan="{len(columns)}" class="empty">(none)</td></tr>')
    parts.append("</tbody></table>")
    return "\n".join(parts)


def html_key_values(
    pairs: Mapping[str, object], *, formats: Mapping[str, str] | None = None
) -> str:
    """A two-column HTML table of names and values."""
    formats = dict(formats or {})
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th>"
        f"<td>{html.escape(_format_value(v, formats.get(k)))}</td></tr>"
        for k, v in pairs.items()
    )
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def html_figure(src: str, caption: str, *, alt: str | None = None) -> str:
    """An ``<img>`` with a caption; ``src`` is a path relative to the page (e.g. ``x.png``)."""
    link = html.escape(src, quote=True)
    text = html.escape(alt or caption, quote=True)
    return (
        f'<figure><a href="{link}"><img src="{link}" alt="{text}"></a>'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       max-width: 1250px; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.1em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.8em; }
p.subtitle { color: #555; margin-top: 0; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }
thead th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.empty { color: #888; font-style: italic; }
table.kv th { background: #f7f7f7; font-weight: 600; }
caption { text-align: left; font-weight: 600; padding-bottom: 0.3em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.9em; margin-top: 0.3em; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5em 0.8em; }
code { background: #f4f4f4; padding: 0 0.25em; }
"""


def html_page(
    title: str,
    sections: Sequence[Section],
    *,
    subtitle: str | None = None,
) -> str:
    """A complete, self-contained HTML page (inline CSS, no JavaScript, UTF-8).

    Images are referenced by the relative paths given to :func:`html_figure`; a
    table of contents links the sections that have an ``anchor``.
    """
    nav = " ".join(
        f'<a href="#{html.escape(s.anchor, quote=True)}">{html.escape(s.heading)}</a>'
        for s in sections
        if s.anchor
    )
    body = []
    for s in sections:
        anchor = f' id="{html.escape(s.anchor, quote=True)}"' if s.anchor else ""
        body.append(f"<section{anchor}>\n<h2>{html.escape(s.heading)}</h2>\n{s.body}\n</section>")
    sub = f'<p class="subtitle">{html.escape(subtitle)}</p>' if subtitle else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n{sub}\n"
        + (f"<nav>{nav}</nav>\n" if nav else "")
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
