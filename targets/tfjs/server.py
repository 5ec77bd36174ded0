"""tfjs-browser's routes on the shared page server (edgeport/browser/server.py): its page, the TF.js bundles.

/                    page.html
/edgeport/<file>     page.js (targets/tfjs), protocol.js (edgeport/browser)
/npm/<package>/dist/ the TF.js bundles and wasm binaries of the installed packages (@tensorflow/...)
/model/<file>        the artifact folder (model.json + weight shards), fetched by tf.loadGraphModel
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgeport.browser import server as page_server
from edgeport.browser.server import Site
from edgeport.formats.tfjs import packages as tfjs_project
from edgeport.targets.tfjs import shared

PAGE_FILES = ("page.html", "page.js")


def routes() -> page_server.Routes:
    return page_server.Routes(
        page_dir=shared.PROJECT_DIR,
        page_files=PAGE_FILES,
        npm_root=tfjs_project.node_modules() / "@tensorflow",
        npm_allowed=lambda inside: "/dist/" in inside,
    )


def resolve(path: str, model_dir: Path) -> Path | None:
    """The file a URL path names, or None (unknown route, or an escape from its folder)."""
    return page_server.resolve(path, model_dir, routes())


@contextmanager
def serve(artifact: Path, *, isolated: bool = False) -> Iterator[Site]:
    """Serve the page and the artifact's folder until the block ends (cross-origin isolated if asked)."""
    with page_server.serve(artifact, routes(), isolated=isolated) as site:
        yield site
