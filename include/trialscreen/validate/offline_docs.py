"""Data Docs without the internet: every page of a Great Expectations Data Docs site rewritten
to load its stylesheets, scripts, fonts and logo from the site itself.

GX renders its pages with Bootstrap, jQuery, bootstrap-table, Font Awesome and Vega from CDNs,
the GX logo from its web-asset bucket (with the data context id in the query string) and a
newsletter link with tracking parameters; it has no option to do otherwise. On an air-gapped
hospital server such a page renders unstyled, without its tables' scripts. ``localize_site``
copies the vendored assets (``assets/``, unmodified files of the npm packages with their
licences; ``assets/README.md``) to ``<site>/static/vendor/`` and rewrites every ``*.html``
of the site:

* every CDN stylesheet and script GX uses -> the vendored copy (relative link);
* the Vega scripts (profiling charts only; the quality gate renders none) -> dropped;
* the GX logo and its dark-mode background -> the site's own ``static/images/logo-long.png``;
* ``integrity``/``crossorigin`` -> dropped (a ``file://`` page cannot make CORS requests);
* the newsletter footer -> dropped; any other link off the site keeps its text, loses its
  ``href``; any other external ``src``/stylesheet is dropped.

Idempotent: a page already rewritten has no external address left to rewrite. After a gate,
only the pages its Data Docs build wrote (its validation and suite pages, and the index GX
re-renders) are rewritten, so the night's cost does not grow with the site's history; a site
never localized before (no ``static/vendor``) is rewritten whole. docs/decisions.md, "Data
Docs offline" and #gate-cpu.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

ASSETS = Path(__file__).parent / "assets"
VENDOR = "static/vendor"  # relative to the site root
LOGO = "static/images/logo-long.png"  # GX copies it into every site's static folder

# CDN address (as the GX 1.x templates spell it) -> vendored file under ASSETS
CDN: dict[str, str] = {
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": (
        "bootstrap-4.3.1/bootstrap.min.css"
    ),
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": (
        "bootstrap-4.3.1/bootstrap.min.js"
    ),
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery-3.7.1/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": (
        "popper.js-1.12.9/popper.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": (
        "bootstrap-table-1.19.1/bootstrap-table.min.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": (
        "bootstrap-table-1.19.1/bootstrap-table.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.js": (
        "bootstrap-table-1.19.1/bootstrap-table-filter-control.min.js"
    ),
    # GX links the 1.19.0 stylesheet of the extension (unchanged in 1.19.1)
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.css": (
        "bootstrap-table-1.19.1/bootstrap-table-filter-control.min.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.css": (
        "bootstrap-table-1.19.1/bootstrap-table-filter-control.min.css"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": (
        "fontawesome-free-6.6.0/css/all.min.css"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/"
    "bootstrap-datepicker.min.css": "bootstrap-datepicker-1.9.0/bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/"
    "bootstrap-datepicker.min.js": "bootstrap-datepicker-1.9.0/bootstrap-datepicker.min.js",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/"
    "bootstrap-prefers-dark.css": "bootstrap-dark-1.1.0/bootstrap-prefers-dark.min.css",
}

_EXTERNAL = r"(?:https?:)?//"
_SCRIPT_TAG = re.compile(
    rf"<script\b[^>]*\bsrc=[\"']{_EXTERNAL}[^\"']*[\"'][^>]*>\s*</script>\s*", re.I
)
_LINK_TAG = re.compile(rf"<link\b[^>]*\bhref=[\"']{_EXTERNAL}[^\"']*[\"'][^>]*/?>\s*", re.I)
_GX_ASSET = re.compile(r"https://great-expectations-web-assets\.[^\"')\s]+", re.I)
_NEWSLETTER = re.compile(r"<footer>\s*<p>[^<]*newsletter.*?</footer>\s*", re.I | re.S)
_A_HREF = re.compile(rf"(<a\b[^>]*?)\s+href=[\"']{_EXTERNAL}[^\"']*[\"']", re.I)
_OTHER_SRC = re.compile(
    rf"(<(?:img|iframe|source|embed)\b[^>]*?)\s+src=[\"']{_EXTERNAL}[^\"']*[\"']", re.I
)
# a file:// page cannot make the CORS request that crossorigin/integrity ask for
_CORS_ATTR = re.compile(r"\s+(?:integrity|crossorigin)=[\"'][^\"']*[\"']", re.I)
_CSS_URL = re.compile(rf"url\(\s*[\"']?{_EXTERNAL}[^)\"']*[\"']?\s*\)", re.I)


def _relative(target: str, page: Path, site: Path) -> str:
    return Path(os.path.relpath(site / target, page.parent)).as_posix()


def rewrite_page(text: str, page: Path, site: Path) -> str:
    """One page with every external address replaced or removed (see the module doc)."""
    for url, local in CDN.items():
        text = text.replace(url, _relative(f"{VENDOR}/{local}", page, site))
    text = _GX_ASSET.sub(_relative(LOGO, page, site), text)
    text = _NEWSLETTER.sub("", text)
    text = _SCRIPT_TAG.sub("", text)  # Vega and anything else not vendored
    text = _LINK_TAG.sub("", text)
    text = _A_HREF.sub(r"\1", text)
    text = _OTHER_SRC.sub(r"\1", text)
    text = _CORS_ATTR.sub("", text)
    return _CSS_URL.sub("none", text)


def localize_site(site: Path, pages: Iterable[str] | None = None) -> int:
    """Vendor the assets into ``<site>/static/vendor`` and rewrite pages of the site in
    place: every page, or, given ``pages`` (paths relative to the site, e.g. the ones a gate's
    build wrote), those and the index, when the site was localized before (its vendor folder
    exists; otherwise every page). Returns the number of pages changed. A missing site is
    left alone (0)."""
    site = Path(site)
    if not (site / "index.html").is_file():
        return 0
    if pages is None or not (site / VENDOR).is_dir():
        targets = sorted(site.rglob("*.html"))
    else:
        targets = sorted({site / "index.html", *(site / page for page in pages)})
    shutil.copytree(ASSETS, site / VENDOR, dirs_exist_ok=True)
    changed = 0
    for page in targets:
        if not page.is_file():
            continue
        text = page.read_text(encoding="utf-8")
        new = rewrite_page(text, page, site)
        if new != text:
            page.write_text(new, encoding="utf-8")
            changed += 1
    return changed
