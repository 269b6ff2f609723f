"""Reading an atlas's rendered pages in tests: tag balance, links, images, ids and text (the
site's tests and the browser test check every page of a fake atlas with these)."""
from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class PageChecker(HTMLParser):
    """Collects what the tests check: tag balance, links, images, ids and text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.links: list[str] = []  # every href/src
        self.images: list[dict[str, str | None]] = []
        self.ids: set[str] = set()
        self.text: list[str] = []
        self.scripts_inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(values["id"])
        for name in ("href", "src"):
            if values.get(name) is not None:
                self.links.append(values[name])
        for candidate in (values.get("srcset") or "").split(","):
            if candidate.strip():
                self.links.append(candidate.split()[0])
        if tag == "img":
            self.images.append(values)
        if tag == "script":
            self._in_script = values.get("src") is None
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(values["id"])
        if tag == "img":
            self.images.append(values)

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False
        if tag in VOID:
            self.errors.append(f"end tag for void element </{tag}>")
        elif not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else 'nothing'}>")
        else:
            self.stack.pop()

    def handle_data(self, data):
        if self._in_script:
            self.scripts_inline.append(data)
        else:
            self.text.append(data)


def parse(path: Path) -> PageChecker:
    checker = PageChecker()
    checker.feed(path.read_text(encoding="utf-8"))
    checker.close()
    return checker


def pages(output: Path) -> list[Path]:
    return [output / "index.html", output / "methods.html", output / "claims.html",
            *sorted((output / "classes").glob("*/index.html")), *sorted((output / "units").rglob("*.html"))]
