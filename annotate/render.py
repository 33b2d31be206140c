"""Safe rendering of prompts, responses and guidelines: Markdown to HTML, with any HTML in the
text shown as text (not rendered), then sanitised with nh3 (an allow-list) as a second line, so
no data can inject markup, script, handlers, styles or remote images."""

from __future__ import annotations

import difflib
import html
import re
from functools import lru_cache

import markdown
import nh3

ALLOWED_TAGS = (set(nh3.ALLOWED_TAGS) - {"img"}) | {"pre", "code", "table", "thead", "tbody", "tr", "th", "td"}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "code": {"class"}, "th": {"align"}, "td": {"align"}}


def _markdown() -> markdown.Markdown:
    """A converter that treats raw HTML as text: Markdown passes HTML blocks and inline tags
    through by default, and record text is untrusted. (Not shared: instances keep state.)"""
    md = markdown.Markdown(extensions=["fenced_code", "tables", "sane_lists", "nl2br"], output_format="html")
    md.preprocessors.deregister("html_block")
    md.inlinePatterns.deregister("html")
    return md


@lru_cache(maxsize=4096)
def markdown_html(text: str) -> str:
    raw = _markdown().convert(text)
    return nh3.clean(raw, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES,
                     url_schemes={"http", "https", "mailto"}, link_rel="noopener noreferrer nofollow")


_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")


def word_diff_html(left: str, right: str) -> tuple[str, str, float]:
    """Both texts as escaped HTML with the words the other side lacks wrapped in <mark>, and
    the similarity ratio (0..1) of the two word sequences."""
    a, b = _TOKEN.findall(left), _TOKEN.findall(right)
    out_a, out_b = [], []
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        chunk_a = html.escape("".join(a[i1:i2]))
        chunk_b = html.escape("".join(b[j1:j2]))
        if op == "equal":
            out_a.append(chunk_a)
            out_b.append(chunk_b)
            continue
        if chunk_a.strip():
            out_a.append(f'<mark class="diff-del">{chunk_a}</mark>')
        else:
            out_a.append(chunk_a)
        if chunk_b.strip():
            out_b.append(f'<mark class="diff-ins">{chunk_b}</mark>')
        else:
            out_b.append(chunk_b)
    return "".join(out_a), "".join(out_b), round(matcher.ratio(), 3)
