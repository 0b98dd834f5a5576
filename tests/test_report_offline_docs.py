"""Data Docs on a server without internet (issue 13 item 3): the quality gate's Data Docs
(real Great Expectations, the hand-written warehouse of test_validate) render styled and list
the validations in headless Chromium with every non-file request aborted.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
from test_validate import build_clean

from trialscreen.validate import validate
from trialscreen.validate.offline_docs import localize_site, rewrite_page

EXTERNAL = re.compile(r"""(?:src|href)=["'](?:https?:)?//|url\(\s*["']?(?:https?:)?//""", re.I)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    url = build_clean(tmp_path_factory.mktemp("wh") / "wh.duckdb", "run-offline")
    reports = tmp_path_factory.mktemp("reports")
    outcome = validate(url, reports, "run-offline", date(2026, 11, 2), suites=["marts"])
    assert outcome.data_docs_index is not None
    return Path(outcome.data_docs_index).parent


def test_no_page_links_anything_off_the_site(site):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 3
    offending = [p.relative_to(site).as_posix() for p in pages if EXTERNAL.search(p.read_text())]
    assert offending == []
    assert (site / "static/vendor/bootstrap-4.3.1/bootstrap.min.css").is_file()
    assert (site / "static/vendor/bootstrap-4.3.1/LICENSE").is_file()
    # a second pass changes nothing (a gate rewrites the pages it built, after its checkpoints)
    assert localize_site(site) == 0


def test_rewrite_points_cdn_links_at_the_vendored_copy_relative_to_the_page(tmp_path):
    page = tmp_path / "validations" / "a" / "b.html"
    html = (
        '<link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/'
        'bootstrap.min.css"/><script src="https://cdn.jsdelivr.net/npm/vega@5"></script>'
        '<script src="https://code.jquery.com/jquery-3.7.1.min.js" integrity="sha384-x" '
        'crossorigin="anonymous"></script>'
        '<img src="https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png'
        '?d=1&dataContextId=abc"><a href="https://greatexpectations.io/x" class="b">GX</a>'
    )
    out = rewrite_page(html, page, tmp_path)
    assert 'href="../../static/vendor/bootstrap-4.3.1/bootstrap.min.css"' in out
    assert '<script src="../../static/vendor/jquery-3.7.1/jquery.min.js"></script>' in out
    assert "vega" not in out and "dataContextId" not in out
    assert 'src="../../static/images/logo-long.png"' in out
    assert '<a class="b">GX</a>' in out


@pytest.mark.browser
def test_data_docs_render_styled_with_the_network_disabled(site, chromium):
    from playwright.sync_api import sync_playwright

    external: list[str] = []
    failed: list[str] = []

    def route(r):  # every request that is not a local file is refused and recorded
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            external.append(r.request.url)
            r.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=["--no-sandbox"])
        context = browser.new_context(offline=True)
        context.route("**/*", route)
        page = context.new_page()
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.goto((site / "index.html").as_uri(), wait_until="load")
        styles = page.evaluate(
            """() => {
                const s = (el) => el ? getComputedStyle(el) : null;
                const nav = s(document.querySelector('nav.navbar'));
                const icon = document.querySelector('i.fas, i.fa');
                return {
                    bodyFont: s(document.body).fontFamily,
                    navDisplay: nav && nav.display,
                    tableClass: !!document.querySelector('table.table'),
                    bootstrapTable: typeof jQuery !== 'undefined' && !!jQuery.fn.bootstrapTable,
                    iconFont: icon ? s(icon, '::before').fontFamily : null,
                    rows: Array.from(document.querySelectorAll('table tbody tr'))
                        .map(r => r.innerText),
                };
            }"""
        )
        validation_page = sorted((site / "validations" / "marts").rglob("*.html"))[0]
        page.goto(validation_page.as_uri(), wait_until="load")
        validation = page.evaluate(
            """() => ({
                bodyFont: getComputedStyle(document.body).fontFamily,
                cardBorder: getComputedStyle(document.querySelector('.card')).borderTopStyle,
                text: document.body.innerText,
            })"""
        )
        browser.close()
    assert external == [] and failed == []
    # Bootstrap's font stack and flex navbar, bootstrap-table's plugin, Font Awesome's font
    assert "-apple-system" in styles["bodyFont"]
    assert styles["navDisplay"] == "flex"
    assert styles["bootstrapTable"] is True
    assert "Font Awesome" in (styles["iconFont"] or "")
    assert "-apple-system" in validation["bodyFont"]
    assert validation["cardBorder"] == "solid"
    # the index lists the validations of the run (one per asset of the marts suite)
    listed = [r for r in styles["rows"] if "run-offline" in r]
    assert len(listed) >= 4, styles["rows"][:5]
    assert "marts." in "".join(listed)  # the suites' names, rendered by bootstrap-table
    assert "Expectation" in validation["text"] and "marts." in validation["text"]
