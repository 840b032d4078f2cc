"""The few HTML pages of ``dirac login``'s browser step: minimal, escaped, never cached.

Every value that comes from a request or the configuration goes through
``html.escape``; the pages load nothing (``default-src 'none'``) and may not be framed.
"""

from __future__ import annotations

import re
from html import escape

from fastapi import status
from fastapi.responses import HTMLResponse

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # the verification URL carries the user code: do not pass it on to other sites
    "Referrer-Policy": "no-referrer",
}

STYLE = (
    "body{font-family:sans-serif;max-width:36em;margin:3em auto;padding:0 1em;line-height:1.5}"
    "label{display:block;margin:.6em 0}input{font-size:1em;padding:.3em}"
    ".error{color:#a00}.ok{color:#070}button{font-size:1em;padding:.3em 1em;margin-right:.5em}"
)


def page(title: str, body: str, status_code: int = status.HTTP_200_OK) -> HTMLResponse:
    """A page of *body* (already escaped HTML) under *title* (plain text)."""
    document = (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>DiracX - {escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>\n{body}\n</body></html>\n"
    )
    return HTMLResponse(document, status_code=status_code, headers=SECURITY_HEADERS)


def text(message: str) -> str:
    """Plain text as HTML: escaped, with `quoted commands` shown as code."""
    return re.sub(r"`([^`<>]+)`", r"<code>\1</code>", escape(message))


def _error(message: str | None) -> str:
    return f"<p class=error role=alert>{text(message)}</p>" if message else ""


def code_form(
    action: str, message: str | None = None, status_code: int = status.HTTP_200_OK
) -> HTMLResponse:
    """Asks for the code ``dirac login`` printed."""
    body = (
        f"{_error(message)}"
        "<p>Enter the code that <code>dirac login</code> shows in your terminal.</p>"
        f'<form method=get action="{escape(action)}">'
        "<label>Code <input name=user_code required autofocus autocomplete=off "
        'placeholder="XXXX-XXXX" size=12></label>'
        "<button type=submit>Continue</button></form>"
    )
    return page("Log in", body, status_code)


def account_form(
    action: str,
    *,
    user_code: str,
    vo: str,
    group: str | None,
    client_id: str,
    message: str | None = None,
    status_code: int = status.HTTP_200_OK,
) -> HTMLResponse:
    """The login form of a VO with built-in accounts; it says what the login is for, so
    that a user who did not start ``dirac login`` notices (RFC 8628 section 5.4)."""
    asked = f"VO <b>{escape(vo)}</b>" + (f", group <b>{escape(group)}</b>" if group else "")
    body = (
        f"{_error(message)}"
        f"<p>A program (<code>{escape(client_id)}</code>) with the code "
        f"<b>{escape(user_code)}</b> asks to act on your behalf in {asked}. Log in only if "
        "you started <code>dirac login</code> yourself.</p>"
        f'<form method=post action="{escape(action)}">'
        f'<input type=hidden name=user_code value="{escape(user_code)}">'
        "<label>Username <input name=username autofocus autocomplete=username>"
        "</label><label>Password <input name=password type=password "
        "autocomplete=current-password></label>"
        "<button type=submit name=decision value=approve>Log in</button>"
        "<button type=submit name=decision value=deny formnovalidate>Deny</button></form>"
    )
    return page("Log in", body, status_code)


def message_page(title: str, message: str, status_code: int = status.HTTP_200_OK) -> HTMLResponse:
    """A result: the login worked (go back to the terminal), or what went wrong."""
    css = "ok" if status_code < 400 else "error"
    return page(title, f"<p class={css}>{text(message)}</p>", status_code)
