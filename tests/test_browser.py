"""The rendered site in a real headless Chromium, from file://: no console errors, no failed or
network requests, every image decodes, search filters the cards, the lightbox works by keyboard.

Needs Playwright for Python (`pip install playwright`, no `playwright install`) and Debian's
Chromium (`apt-get install chromium`); skipped with the reason when either is missing.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.browser import CHROMIUM_ARGS, chromium_path
from generator import site

pytestmark = pytest.mark.browser

def expect(locator):
    """Playwright's auto-waiting assertions (imported here: Playwright is optional)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set ATLAS_CHROMIUM)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def atlas(write_fake_atlas, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("browser-atlas")
    write_fake_atlas(output, n_classes=3)
    site.render(output)
    return output


class Watched:
    """A page plus every console error, page error, failed request and non-file request."""

    def __init__(self, browser, url: str, width: int = 1280):
        self.problems: list[str] = []
        self.context = browser.new_context(viewport={"width": width, "height": 900})
        self.page = self.context.new_page()
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url} {r.failure}"))
        self.page.on("request", lambda r: r.url.startswith("file://") or self.problems.append(f"network: {r.url}"))
        self.page.goto(url)

    def load_all_images(self) -> list[dict]:
        """Force lazy images to load, wait for them, and report each one's decoded width."""
        self.page.evaluate("for (const img of document.querySelectorAll('main img')) img.loading = 'eager'")
        self.page.wait_for_function("Array.from(document.querySelectorAll('main img')).every(i => i.complete)")
        return self.page.evaluate(
            "Array.from(document.querySelectorAll('main img')).map(i => ({src: i.src, width: i.naturalWidth}))")

    def close(self) -> None:
        self.context.close()


def test_index_loads_cleanly_and_search_filters(browser, atlas):
    watched = Watched(browser, (atlas / "index.html").as_uri())
    page = watched.page
    images = watched.load_all_images()
    assert len(images) == 3 and all(image["width"] > 0 for image in images), images
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    visible = "#class-list > li:not([hidden])"
    assert page.locator(visible).count() == 3
    # the class list (class-index.js) loads on the first use of the search: expect() waits for it
    page.fill("#class-search", "springer")
    expect(page.locator(visible)).to_have_count(1)
    assert "English springer" in page.locator(visible).inner_text()
    assert page.inner_text("#class-count") == "1 shown"
    page.fill("#class-search", "no such class")
    assert page.locator(visible).count() == 0 and page.is_visible("#no-match")
    page.fill("#class-search", "")
    page.select_option("#class-sort", "name")
    names = page.locator("#class-list .card-title").all_inner_texts()
    assert names == sorted(names, key=str.lower)
    assert watched.problems == []
    watched.close()


def test_class_page_loads_cleanly_and_lightbox_uses_keyboard(browser, atlas):
    watched = Watched(browser, (atlas / "classes" / "n00000001" / "index.html").as_uri())
    page = watched.page
    images = watched.load_all_images()
    assert len(images) > 20 and all(image["width"] > 0 for image in images), images
    link = page.locator("a.zoom").first
    link.focus()
    page.keyboard.press("Enter")
    assert page.locator("dialog.lightbox").evaluate("d => d.open")
    page.wait_for_function("document.querySelector('dialog.lightbox img').naturalWidth > 0")
    page.keyboard.press("Escape")
    assert not page.locator("dialog.lightbox").evaluate("d => d.open")
    assert page.evaluate("document.activeElement.classList.contains('zoom')")
    page.click("a[href='#topics']")
    assert page.evaluate("location.hash") == "#topics"
    # the diagnostics sections: the pre-images' error table, the neighbours each way, the overlays
    assert page.locator("#preimages table.step-numbers tbody tr").count() == 9
    assert page.locator("#neighbours .retrieved img").count() == 12
    assert page.locator("#saliency .strip figure").count() == 6 and page.locator("#fc7map figure img").count() == 1
    assert watched.problems == []
    watched.close()


def test_every_page_fits_a_phone_without_errors(browser, atlas):
    for path in [atlas / "index.html", atlas / "classes" / "n00000000" / "index.html", atlas / "claims.html",
                 atlas / "methods.html"]:
        watched = Watched(browser, path.as_uri(), width=360)
        overflow = watched.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path.name} scrolls sideways by {overflow}px at 360px"
        assert watched.problems == []
        watched.close()


CONTRAST_JS = """selectors => selectors.flatMap(selector => Array.from(document.querySelectorAll(selector)).slice(0, 3).map(el => {
  let bg = el, colour = getComputedStyle(el).backgroundColor;
  while (bg && (colour === 'rgba(0, 0, 0, 0)' || colour === 'transparent')) {
    bg = bg.parentElement;
    colour = bg ? getComputedStyle(bg).backgroundColor : 'rgb(255, 255, 255)';
  }
  return {selector, fg: getComputedStyle(el).color, bg: colour};
}))"""


def contrast(foreground: str, background: str) -> float:
    """WCAG contrast ratio of two CSS rgb()/rgba() colours (alpha ignored: our text is opaque)."""
    def luminance(colour: str) -> float:
        channels = [float(v) / 255 for v in colour[colour.index("(") + 1:-1].split(",")[:3]]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    high, low = sorted([luminance(foreground), luminance(background)], reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_contrast_meets_wcag_aa(browser, atlas, scheme):
    selectors = ["body", ".lede", ".caption", ".card-meta", ".pill", ".summary", ".nums dt", "a", ".toc a",
                 ".site-nav a", "details > summary", ".badge", ".verdict"]
    context = browser.new_context(color_scheme=scheme)
    page = context.new_page()
    checked = []
    for path in [atlas / "index.html", atlas / "classes" / "n00000000" / "index.html", atlas / "claims.html"]:
        page.goto(path.as_uri())
        body = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert (contrast(body, "rgb(0, 0, 0)") < 2) == (scheme == "dark"), f"{scheme} scheme, body {body}"
        for sample in page.evaluate(CONTRAST_JS, selectors):
            ratio = contrast(sample["fg"], sample["bg"])
            assert ratio >= 4.5, f"{path.name} {scheme}: {sample} has contrast {ratio:.2f}"
            checked.append(sample["selector"])
    context.close()
    assert {"body", ".caption", ".card-meta", ".badge", ".verdict"} <= set(checked)


@pytest.fixture(scope="module")
def atlas_1000(write_large_atlas, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("browser-atlas-1000")
    write_large_atlas(output, 1000)
    site.render(output)
    return output


@pytest.mark.slow
def test_a_1000_class_index_pages_searches_and_sorts_cleanly(browser, atlas_1000):
    watched = Watched(browser, (atlas_1000 / "index.html").as_uri())
    page = watched.page
    cards = "#class-list > li"
    assert page.inner_text("#class-count") == f"1–{site.INDEX_PAGE} of 1000 shown"
    assert page.locator(cards).count() == site.INDEX_PAGE
    assert page.inner_text("#page-where") == f"Page 1 of {-(-1000 // site.INDEX_PAGE)}"
    assert page.evaluate("window.ATLAS_INDEX") is None  # opening the index does not load the class list
    page.click("#page-next")  # loads it, then turns the page
    expect(page.locator("#class-count")).to_have_text(f"{site.INDEX_PAGE + 1}–{2 * site.INDEX_PAGE} of 1000 shown")
    assert page.locator(f"{cards} .card-meta").first.inner_text().endswith(f"#{site.INDEX_PAGE}")
    page.fill("#class-search", "golden retriever")  # a class far beyond the first page
    assert page.locator(cards).count() == 1 and page.is_hidden("#class-pager")
    assert page.inner_text(f"{cards} .card-title") == "golden retriever"
    page.fill("#class-search", "")
    page.select_option("#class-sort", "heterogeneity")
    pills = page.locator(f"{cards} .pill[title]").all_inner_texts()
    values = [float(text.removeprefix("het. ")) for text in pills]
    assert len(values) == site.INDEX_PAGE and values == sorted(values, reverse=True) and values[0] > 0.99
    images = watched.load_all_images()
    assert len(images) == site.INDEX_PAGE and all(image["width"] > 0 for image in images)
    page.fill("#class-search", "golden retriever")
    page.click(f"{cards} a")
    page.wait_for_url("**/classes/n02099601/index.html")
    assert page.locator("a[rel=prev]").inner_text().endswith("curly-coated retriever")
    assert watched.problems == []
    watched.close()


@pytest.fixture(scope="module")
def units_atlas(tmp_path_factory) -> Path:
    """The tiny world's atlas with its unit pages (helpers.make_world, fake class methods)."""
    import dataclasses

    import helpers
    from generator import build as build_module
    from generator.units import UnitsParams

    with pytest.MonkeyPatch.context() as patch:
        helpers.install_fakes(patch)
        patch.setattr(build_module, "_PATHWAYS", {})
        world = helpers.make_world(tmp_path_factory.mktemp("units-world"))
        world = dataclasses.replace(world, units=UnitsParams(iterations=3, top_k=4, per_class=2))
        report = build_module.build(world, progress=False)
        assert report.ok and report.units.ran, report.summary()
    site.render(world.output)
    return world.output


def test_unit_pages_and_layer_index_load_cleanly(browser, units_atlas):
    index = units_atlas / "units" / "pool5" / "index.html"
    unit = units_atlas / "units" / "pool5" / "1.html"
    for path, least in [(index, 8), (unit, 6), (units_atlas / "units" / "index.html", 1)]:
        watched = Watched(browser, path.as_uri())
        lazy = watched.page.evaluate("Array.from(document.querySelectorAll('main td img, .gallery img')).map(i => i.loading)")
        assert set(lazy) <= {"lazy"}, f"{path.name}: thumbnails not lazy-loaded"
        images = watched.load_all_images()
        assert len(images) >= least and all(image["width"] > 0 for image in images), images
        alts = watched.page.evaluate("Array.from(document.querySelectorAll('main img')).map(i => i.alt.trim())")
        assert all(alts), f"{path.name}: an image without alt text"
        assert watched.problems == [], watched.problems
        watched.close()
    watched = Watched(browser, index.as_uri())
    watched.page.fill("#unit-number", "2")
    watched.page.keyboard.press("Enter")
    watched.page.wait_for_url("**/units/pool5/2.html")
    assert watched.page.locator("h1").inner_text() == "pool5 unit 2"
    watched.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_unit_pages_text_contrast_meets_wcag_aa(browser, units_atlas, scheme):
    selectors = ["body", ".lede", ".caption", ".summary", ".nums dt", "a", ".site-nav a", "td", "th", ".count", ".field"]
    context = browser.new_context(color_scheme=scheme)
    page = context.new_page()
    for path in [units_atlas / "units" / "pool5" / "index.html", units_atlas / "units" / "pool5" / "0.html"]:
        page.goto(path.as_uri())
        for sample in page.evaluate(CONTRAST_JS, selectors):
            ratio = contrast(sample["fg"], sample["bg"])
            assert ratio >= 4.5, f"{path.name} {scheme}: {sample} has contrast {ratio:.2f}"
    context.close()
