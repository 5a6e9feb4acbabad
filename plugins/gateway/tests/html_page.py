"""Reading the console's HTML in tests: an element's text by its id, elements by class, links."""

from __future__ import annotations

import re
from html.parser import HTMLParser

VOID = {"meta", "link", "input", "br", "img", "hr", "source", "col", "wbr", "area", "base"}


class Element:
    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag, self.attrs = tag, attrs
        self.parts: list[str] = []
        self.children: list[Element] = []

    @property
    def text(self) -> str:
        return re.sub(r"\s+", " ", "".join(self.parts)).strip()

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


class Page(HTMLParser):
    """A parsed page: ``page.by_id("x").text``, ``page.by_class("entry")``, ``page.links``."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.html = html
        self.elements: list[Element] = []
        self._open: list[Element] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        if self._open:
            self._open[-1].children.append(element)
        self.elements.append(element)
        if tag not in VOID:
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i].tag == tag:
                del self._open[i:]
                return

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.parts.append(data)

    def by_id(self, id_: str) -> Element:
        found = [e for e in self.elements if e.attrs.get("id") == id_]
        assert found, f"no element #{id_} in the page"
        return found[0]

    def has_id(self, id_: str) -> bool:
        return any(e.attrs.get("id") == id_ for e in self.elements)

    def by_class(self, name: str) -> list[Element]:
        return [e for e in self.elements if name in e.classes]

    @property
    def links(self) -> list[str]:
        return [e.attrs["href"] for e in self.elements if e.tag == "a" and "href" in e.attrs]

    @property
    def text(self) -> str:
        body = [e for e in self.elements if e.tag == "main"]
        return body[0].text if body else ""
