"""A tiny browser for the login tests: follows redirects and submits HTML forms.

What a person does with the link ``dirac login`` prints: open it, follow the
redirects (to the VO's identity provider and back), fill in a form and press one of
its buttons. It is httpx with a cookie jar and an HTML form parser — no JavaScript.

Fixture ``browser`` (function): a :class:`Browser`, closed after the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin

import httpx
import pytest

TIMEOUT = 30.0


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)  # hidden and prefilled inputs
    buttons: list[tuple[str, str]] = field(default_factory=list)  # (name, value)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(a.get("action", ""), a.get("method", "get").lower()))
        elif self.forms and tag in ("input", "button"):
            name = a.get("name")
            if not name:
                return
            if tag == "button" or a.get("type") == "submit":
                self.forms[-1].buttons.append((name, a.get("value", "")))
            else:
                self.forms[-1].fields[name] = a.get("value", "")


def forms(response: httpx.Response) -> list[Form]:
    """The forms of an HTML page."""
    parser = _FormParser()
    parser.feed(response.text)
    return parser.forms


class Browser:
    """``open(url)`` and ``submit(page, **fields)``; redirects are followed, cookies kept."""

    def __init__(self) -> None:
        self.client = httpx.Client(follow_redirects=True, timeout=TIMEOUT)

    def open(self, url: str) -> httpx.Response:
        return self.client.get(url)

    def submit(
        self, page: httpx.Response, *, button: str | None = None, **fields: str
    ) -> httpx.Response:
        """Fill in the page's (first) form with *fields* and press the button whose value
        is *button* (default: the first one)."""
        found = forms(page)
        if not found:
            raise AssertionError(f"no form on {page.url}:\n{page.text[:2000]}")
        form = found[0]
        data = {**form.fields, **fields}
        pressed = next((b for b in form.buttons if button in (None, b[1])), None)
        if button is not None and pressed is None:
            raise AssertionError(f"no button {button!r} in the form of {page.url}")
        if pressed is not None:
            data[pressed[0]] = pressed[1]
        url = urljoin(str(page.url), form.action or str(page.url))
        if form.method == "post":
            return self.client.post(url, data=data)
        return self.client.get(url, params=data)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture
def browser() -> Iterator[Browser]:
    """A browser (httpx with cookies and forms) for this test."""
    with Browser() as b:
        yield b
