"""A local web server for the browser runtime: the page, the TF.js bundles and the artifact folder.

Stdlib http.server on 127.0.0.1 with an ephemeral port, in a daemon thread. Four routes, nothing else:
    /                    page.html
    /edgeport/<file>     page.js, protocol.js (from targets/tfjs)
    /npm/<package>/dist/ the TF.js bundles and wasm binaries of the installed packages (@tensorflow/...)
    /model/<file>        the artifact folder (model.json + weight shards), fetched by tf.loadGraphModel
Responses are never cached, so each run loads the model as a first visit would. With `isolated` they also
carry COOP/COEP (cross-origin isolation), which SharedArrayBuffer and so the threaded wasm build need, as on
a real site that sets those headers; without it the page gets the plain SIMD build most sites get.
"""

from __future__ import annotations

import mimetypes
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from edgeport.formats.tfjs import packages as tfjs_project
from edgeport.targets.tfjs import shared

PAGE_FILES = ("page.html", "page.js", "protocol.js")
CONTENT_TYPES = {
    ".wasm": "application/wasm",
    ".js": "text/javascript",
    ".json": "application/json",
    ".html": "text/html; charset=utf-8",
    ".bin": "application/octet-stream",
}
HEADERS = {"Cache-Control": "no-store"}
ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}


@dataclass(frozen=True)
class Site:
    base_url: str  # http://127.0.0.1:PORT
    model_url: str  # the artifact's main file, as the page fetches it


def resolve(path: str, model_dir: Path) -> Path | None:
    """The file a URL path names, or None (unknown route, or an escape from its folder)."""
    path = unquote(path)
    if path in ("/", "/index.html"):
        return shared.PROJECT_DIR / "page.html"
    prefix, _, rest = path.lstrip("/").partition("/")
    if prefix == "edgeport":
        return shared.PROJECT_DIR / rest if rest in PAGE_FILES else None
    if prefix == "npm":
        root, inside = tfjs_project.node_modules() / "@tensorflow", rest
        if "/dist/" not in inside:
            return None
    elif prefix == "model":
        root, inside = model_dir, rest
    else:
        return None
    candidate = (root / inside).resolve()
    return candidate if candidate.is_relative_to(root.resolve()) and candidate.is_file() else None


def _handler(model_dir: Path, headers: dict[str, str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            target = resolve(urlsplit(self.path).path, model_dir)
            if target is None:
                self.send_error(404, "not served by edgeport")
                return
            body = target.read_bytes()
            self.send_response(200)
            content_type = CONTENT_TYPES.get(target.suffix) or mimetypes.guess_type(target.name)[0]
            self.send_header("Content-Type", content_type or "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):  # noqa: A002 - http.server's signature; keep quiet
            pass

    return Handler


@contextmanager
def serve(artifact: Path, *, isolated: bool = False) -> Iterator[Site]:
    """Serve the page and the artifact's folder until the block ends (cross-origin isolated if asked)."""
    headers = HEADERS | (ISOLATION_HEADERS if isolated else {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(artifact.parent, headers))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="edgeport-tfjs-server", daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        yield Site(base_url=base, model_url=f"{base}/model/{artifact.name}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
