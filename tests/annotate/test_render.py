"""Markdown from data renders; HTML in data is shown as text, and nh3's allow-list cleans the
result as a second line of defence."""

import re

from annotate.render import markdown_html, word_diff_html


def test_markdown_renders_and_html_is_sanitised():
    html = markdown_html("**bold** and `code`\n\n```python\nprint('<b>')\n```\n\n<script>alert(1)</script>"
                         "<img src=x onerror=alert(1)><a href=\"javascript:alert(1)\" onclick=\"x()\">link</a>"
                         "<div style=\"position:fixed\">styled</div>")
    assert "<strong>bold</strong>" in html and "<code>code</code>" in html
    assert "print(&#x27;&lt;b&gt;&#x27;)" in html or "print('&lt;b&gt;')" in html
    # HTML in the text is shown as text, never as markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;div style=" in html
    tags = re.findall(r"<[^>]*>", html)
    for bad in ("<script", "<img", "<div", "onerror", "javascript:", "onclick", "style="):
        assert not any(bad in tag for tag in tags), bad
    assert 'rel="noopener noreferrer nofollow"' in markdown_html("[x](https://example.org)")


def test_word_diff_marks_only_the_differences_and_escapes():
    left, right, ratio = word_diff_html("The capital is Canberra <b>", "The capital is Sydney <b>")
    assert '<mark class="diff-del">Canberra</mark>' in left
    assert '<mark class="diff-ins">Sydney</mark>' in right
    assert "&lt;b&gt;" in left and "<b>" not in left.replace("<mark", "")
    assert 0.5 < ratio < 1
