"""The browser side every HTTP origin serves: the bundled pages and clients (``web/``).

Rules of this module:
- It serves only what ``make install`` built from npm packages into ``web/dist`` (esbuild;
  web/build.mjs): nothing is fetched at run time, from a CDN or elsewhere.
- ``GET /web/{name}`` answers a file of that folder by its bare name (no paths, no dot files);
  ``GET /demo`` is the React page (``web/src/app.jsx``) reading one answer over SSE.
- A missing bundle is a 404 with a one-line reason that says how to build it.
"""

from __future__ import annotations

import re
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

DIST = Path(__file__).resolve().parents[2] / "web" / "dist"
NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,80}$")
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".map": "application/json",
}
MISSING = "the browser bundle is not built: run `make install` (npm and esbuild)"


def built() -> bool:
    return (DIST / "bench.html").is_file()


async def _file(request: Request) -> Response:
    name = request.path_params["name"]
    path = DIST / name
    if not NAME.match(name) or name.startswith(".") or not path.is_file():
        reason = MISSING if not built() else f"no such file: {name}"
        return JSONResponse({"error": reason}, status_code=404)
    media = TYPES.get(path.suffix, "application/octet-stream")
    return FileResponse(path, media_type=media, headers={"cache-control": "no-store"})


async def _demo(request: Request) -> Response:
    """``/demo?tokens=40&rate=20``: the React page, its hook reading over SSE."""
    if not built():
        return JSONResponse({"error": MISSING}, status_code=404)
    query = request.url.query
    return RedirectResponse(f"/web/app.html?{query}" if query else "/web/app.html", 307)


def routes() -> list[BaseRoute]:
    return [
        Route("/web/{name}", _file, methods=["GET"]),
        Route("/demo", _demo, methods=["GET"]),
    ]


PATHS = {
    "/web/{name}": {
        "get": {"summary": "A file of the browser bundle (pages and clients)",
                "responses": {"200": {"description": "the file"},
                              "404": {"description": "no such file, or not built"}}}
    },
    "/demo": {
        "get": {"summary": "The React page reading an answer",
                "responses": {"307": {"description": "to /web/app.html"},
                              "404": {"description": "the bundle is not built"}}}
    },
}  # fmt: skip
