"""report.html: the report as one self-contained page (the Markdown report's text and tables, figures
embedded as data URIs), to open from the MLflow UI's artifacts or attach to a review. It renders the
subset of Markdown that report.py writes: headings, nested bullet lists, bold, pipe tables, paragraphs."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
.wide { overflow-x: auto; max-width: 100%; } li { overflow-wrap: anywhere; }
figcaption { color: #555; font-size: 13px; }
"""


# Records, once the page has loaded, what the browser actually rendered: figures decoded and table rows laid
# out (a headless-browser test reads them back; a reader never sees them).
ON_LOAD = (
    'window.addEventListener("load",()=>{const b=document.body.dataset;'
    "b.figuresDecoded=[...document.images].filter(i=>i.complete&&i.naturalWidth>0).length;"
    'b.tableRowsShown=[...document.querySelectorAll("tbody tr")].filter(r=>r.offsetHeight>0).length;'
    "b.pageOverflow=Math.max(0,document.documentElement.scrollWidth-window.innerWidth);"
    # inside a frame (MLflow's artifact view shows the page in a sandboxed iframe): tell the frame's parent too
    'if(window.parent!==window)window.parent.postMessage({rethinkReport:{...b}},"*");});'
)


def _inline(text: str) -> str:
    out = html.escape(text, quote=False)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def _table(rows: list[str]) -> str:
    head, body = _cells(rows[0]), [_cells(r) for r in rows[2:]]  # rows[1] is the |---| rule
    out = ["<table>", "<thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr></thead>", "<tbody>"]
    out += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body]
    return '<div class="wide">' + "\n".join([*out, "</tbody></table>"]) + "</div>"  # scrolls, never the page


def _image(alt: str, path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (
        f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(path.name)}</figcaption></figure>"
    )


def markdown_to_html(md: str, base: Path | None = None) -> str:
    """The report's Markdown as HTML body elements; an image line `![alt](file.png)` is embedded from `base`."""
    out: list[str] = []
    lines = md.splitlines()
    depth = 0  # open <ul> levels
    i = 0
    while i < len(lines):
        line = lines[i]
        bullet = re.match(r"^( *)- (.*)$", line)
        level = len(bullet.group(1)) // 2 + 1 if bullet else 0
        while depth > level:
            out.append("</ul>")
            depth -= 1
        if bullet:
            while depth < level:
                out.append("<ul>")
                depth += 1
            out.append(f"<li>{_inline(bullet.group(2))}</li>")
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(lines[i])
                i += 1
            out.append(_table(rows))
            continue
        elif (image := re.match(r"^!\[(.*)\]\((.+\.png)\)$", line)) and base is not None:
            out.append(_image(image.group(1), base / image.group(2)))
        elif heading := re.match(r"^(#{1,4}) (.*)$", line):
            n = len(heading.group(1))
            out.append(f"<h{n}>{_inline(heading.group(2))}</h{n}>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    out += ["</ul>"] * depth
    return "\n".join(out)


def write_html(out: Path, md: str, figures: list[Path], title: str) -> Path:
    """report.html beside report.md: the text and tables (with the images report.md shows, embedded where it
    shows them), then every other figure embedded."""
    figs = [_image(Path(png).stem, Path(png)) for png in figures]
    page = (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head>\n<body>\n{markdown_to_html(md, out)}\n<h2>Figures</h2>\n"
        + "\n".join(figs)
        + f"\n<script>{ON_LOAD}</script>\n</body></html>\n"
    )
    path = out / "report.html"
    path.write_text(page)
    return path
