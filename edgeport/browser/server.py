"""The local web server of every browser runtime: its page, npm bundles from a local install, the artifact.

Stdlib http.server on 127.0.0.1 with an ephemeral port, in a daemon thread. Four routes, nothing else:
    /                    the runtime's page.html
    /edgeport/<file>     the runtime's page files, protocol.js and wire.js (beside this module)
    /npm/<path>          files under the runtime's installed node_modules root that `npm_allowed(path)` accepts
    /model/<file>        the artifact's folder, fetched by the page as a web app would
Responses are never cached, so each run loads the model as a first visit would. With `isolated` they also
carry COOP/COEP (cross-origin isolation): SharedArrayBuffer (threaded wasm) and a 5 µs performance.now().
"""

from __future__ import annotations

import mimetypes
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

HERE = Path(__file__).resolve().parent
SHARED_FILES = ("protocol.js", "wire.js")  # the timing protocol, tensors and WebGPU on the page
CONTENT_TYPES = {
    ".wasm": "application/wasm",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
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
class Routes:
    page_dir: Path  # page.html and the page's own files
    page_files: tuple[str, ...]  # served under /edgeport/
    npm_root: Path  # /npm/<path> is npm_root/<path>
    npm_allowed: Callable[[str], bool] = field(default=lambda inside: True)


@dataclass(frozen=True)
class Site:
    base_url: str  # http://127.0.0.1:PORT
    model_url: str  # the artifact's main file, as the page fetches it
    served_bytes: dict[str, int] = field(default_factory=dict)  # bytes sent, by kind: model, runtime, page

    def downloaded(self) -> dict[str, int]:
        """What a web app's page would download: the model and the runtime's files (not edgeport's page)."""
        return {kind: self.served_bytes.get(kind, 0) for kind in ("model", "runtime")}


KIND_OF_PREFIX = {"model": "model", "npm": "runtime"}  # anything else is edgeport's own page


def resolve(path: str, model_dir: Path, routes: Routes) -> Path | None:
    """The file a URL path names, or None (unknown route, or an escape from its folder)."""
    path = unquote(path)
    if path in ("/", "/index.html"):
        return routes.page_dir / "page.html"
    prefix, _, rest = path.lstrip("/").partition("/")
    if prefix == "edgeport":
        if rest in SHARED_FILES:
            return HERE / rest
        return routes.page_dir / rest if rest in routes.page_files else None
    if prefix == "npm":
        if not routes.npm_allowed(rest):
            return None
        root = routes.npm_root
    elif prefix == "model":
        root = model_dir
    else:
        return None
    candidate = (root / rest).resolve()
    return candidate if candidate.is_relative_to(root.resolve()) and candidate.is_file() else None


def _handler(
    model_dir: Path, routes: Routes, headers: Mapping[str, str], served: dict[str, int]
) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            path = urlsplit(self.path).path
            target = resolve(path, model_dir, routes)
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
            kind = KIND_OF_PREFIX.get(unquote(path).lstrip("/").partition("/")[0], "page")
            with lock:
                served[kind] = served.get(kind, 0) + len(body)

        def log_message(self, format, *args):  # noqa: A002 - http.server's signature; keep quiet
            pass

    return Handler


@contextmanager
def serve(artifact: Path, routes: Routes, *, isolated: bool = False) -> Iterator[Site]:
    """Serve the page and the artifact's folder until the block ends (cross-origin isolated if asked)."""
    headers = HEADERS | (ISOLATION_HEADERS if isolated else {})
    served: dict[str, int] = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(artifact.parent, routes, headers, served))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="edgeport-page-server", daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        yield Site(base_url=base, model_url=f"{base}/model/{artifact.name}", served_bytes=served)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
