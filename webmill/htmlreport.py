"""HTML pieces shared by the dataset report (``curate stats``) and the training report
(``train report``): the page skeleton, embedded PNG images, escaping and the image check script.

Both reports are one self-contained page: no outside links, every plot a base64 PNG ``data:``
URI, so the page opens offline and can be mailed as one file. This module is neither curation
nor training code, so each side imports it without importing the other.
"""

from __future__ import annotations

import base64
import html
import io

#: Sets ``data-images-ok="<decoded>/<total>"`` on ``<body>`` once the page has loaded; the
#: headless-Chromium tests (tests/test_report.py) read it to prove every image decoded.
IMAGES_CHECK_SCRIPT = """window.addEventListener('load',function(){var im=document.images,ok=0;
for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0){ok++;}}
document.body.setAttribute('data-images-ok',ok+'/'+im.length);});"""


#: The style both small reports (``train report``, ``curate ablate``) start from: a centred
#: column, compact bordered tables, images at most the column's width; each adds its cell rules.
BASE_CSS = ("body{font-family:system-ui,sans-serif;max-width:960px;margin:24px auto;padding:0 16px;color:#222}"
            "table{border-collapse:collapse;font-size:13px;margin:8px 0}"
            "th,td{border:1px solid #ddd;padding:3px 8px}"
            "img{max-width:100%;display:block;margin:10px 0}")


def esc(value: object) -> str:
    """``str(value)`` with ``& < > " '`` escaped for HTML text and attribute values."""
    return html.escape(str(value))


def page(title: str, css: str, body: str) -> str:
    """A complete HTML5 page: UTF-8, ``title`` (escaped), inline ``css``, the image check script.

    Args:
        title: plain text for ``<title>``.
        css: a style sheet, inlined as is.
        body: the HTML of ``<body>``, inserted as is (the caller escapes its text).
    """
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{css}</style><script>{IMAGES_CHECK_SCRIPT}</script></head><body>\n"
            f"{body}\n</body></html>")


def img(name: str, png: bytes, alt: str) -> str:
    """An ``<img>`` tag showing ``png`` (PNG bytes) as a base64 ``data:`` URI, ``data-name=name``."""
    b64 = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{b64}" alt="{esc(alt)}" data-name="{esc(name)}">'


def png_bytes(fig) -> bytes:
    """Render a matplotlib ``Figure`` (bare figures use the Agg canvas) to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
