"""A real headless Chromium for the tests that open our pages as a clinician's browser would.

The browser is the system's Chromium (Debian's `chromium`, which `make browser` installs and
`make test` depends on), driven by Playwright over the DevTools protocol: Playwright starts it
with ``executable_path``, so its own browser downloads are never used. A missing browser fails
the test, naming the make target: it is never a skip.
"""
from __future__ import annotations

import os
import re
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")

#: Every <img>: decoded (``img.decode()`` resolved) and its natural size.
_IMAGES = """Promise.all([...document.images].map(img => img.decode().then(
    () => ({alt: img.alt, ok: true, width: img.naturalWidth, height: img.naturalHeight}),
    () => ({alt: img.alt, ok: false, width: img.naturalWidth, height: img.naturalHeight}))))"""

#: Anything that would make the page depend on JavaScript.
_SCRIPTS = """[...document.scripts].length + [...document.querySelectorAll('*')].filter(
    el => [...el.attributes].some(a => a.name.startsWith('on'))).length"""


def find_chromium() -> str:
    """The Chromium executable on PATH; fails the test with the fix when there is none."""
    for name in CHROMIUM_NAMES:
        if found := shutil.which(name):
            return found
    pytest.fail(f"no Chromium on PATH (looked for {', '.join(CHROMIUM_NAMES)}): run "
                "`make browser`, which installs Debian's chromium (`make test` runs it first)",
                pytrace=False)


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium, closed on exit."""
    executable = find_chromium()
    # Chromium refuses to start as root inside its sandbox; CI and our machines run as root.
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=args, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class LoadedPage:
    """What a browser made of one page."""

    title: str
    #: The rendered text, as a reader sees it (``innerText``).
    text: str
    #: One dict per <img>: alt, ok (decoded), width and height (natural size).
    images: list[dict]
    #: <script> elements plus elements with an on* handler attribute.
    scripts: int
    #: Console messages of type error, and uncaught exceptions.
    errors: list[str] = field(default_factory=list)
    #: Requests for anything but the page itself and data: URIs (refused, never sent).
    external: list[str] = field(default_factory=list)

    @property
    def broken_images(self) -> list[dict]:
        return [img for img in self.images if not img["ok"] or img["width"] <= 0]


def load(browser: Browser, path: Path, *, screenshot: Path | None = None) -> LoadedPage:
    """Open ``path`` in a fresh context, wait for it to load, and report what it showed."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    external: list[str] = []

    def refuse(route) -> None:
        external.append(route.request.url)
        route.abort()

    context.route(re.compile(r"^(?!file:|data:)"), refuse)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"exception: {exc}"))
    try:
        page.goto(path.resolve().as_uri(), wait_until="load")
        loaded = LoadedPage(title=page.title(), text=page.inner_text("body"),
                            images=page.evaluate(_IMAGES), scripts=page.evaluate(_SCRIPTS),
                            errors=errors, external=external)
        if screenshot is not None:
            page.screenshot(path=str(screenshot), full_page=True)
        return loaded
    finally:
        context.close()
