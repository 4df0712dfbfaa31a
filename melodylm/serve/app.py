"""The web layer: a FastAPI app whose routes parse a request and call :class:`Playground`.

``create_app(...)`` builds the app (tests use it with the framework's test client);
``serve(...)`` runs it under uvicorn, bound to 127.0.0.1 unless told otherwise.
"""


import asyncio
import contextlib
import errno
import tempfile
import threading
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from melodylm.errors import UserError
from melodylm.serve.jobs import FileStore, GenerationQueue, QueueFull, RenderJobs
from melodylm.serve.playground import Limits, Playground, list_checkpoints, list_tunes, parse_request, safe_name

MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
               ".wav": "audio/wav", ".mid": "audio/midi", ".json": "application/json",
               ".musicxml": "application/vnd.recordare.musicxml+xml", ".xml": "application/xml"}
# Multipart fields besides the file are a few short numbers; this much room on top of the upload is ample.
FORM_OVERHEAD = 64 * 1024


def _size(n: float) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def _need_web():
    from melodylm.extras import require

    for module in ("fastapi", "multipart"):  # multipart: python-multipart, FastAPI's form parser
        require(module, "serve", "the playground")


def render_file(midi_path, out_dir, **options) -> dict[str, Path]:
    """``melodylm.render.render_file``, or a one-line error naming what is missing."""
    try:
        from melodylm.render import render_file as render
    except ImportError as e:
        raise UserError(f"audio and sheet music need melodylm.render ({e})") from None
    return render(midi_path, out_dir, **options)


def _static_files() -> dict[str, tuple[bytes, str]]:
    """The page's files, read once from package data: name -> (bytes, media type)."""
    out = {}
    for f in resources.files("melodylm.serve").joinpath("static").iterdir():
        if f.is_file() and Path(f.name).suffix in MEDIA_TYPES:
            out[f.name] = (f.read_bytes(), MEDIA_TYPES[Path(f.name).suffix])
    return out


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 before any route reads it."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._too_large(send)
        chunks, size, more = [], 0, True
        while more:  # buffer the body (at most ``limit`` bytes) so a chunked upload is limited as well
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunks.append(msg.get("body", b""))
            size += len(chunks[-1])
            more = msg.get("more_body", False)
            if size > self.limit:
                return await self._too_large(send)
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)

    async def _too_large(self, send):
        from starlette.responses import JSONResponse

        limit = _size(self.limit - FORM_OVERHEAD)
        resp = JSONResponse({"error": f"request too large: uploads are limited to {limit}"}, status_code=413)
        await resp({"type": "http"}, None, send)


def _error_handlers(app) -> Callable[[int, str], Any]:
    """Every failure becomes ``{"error": "one line"}``: 400 user mistakes, 404, 503 busy, 500 bugs."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException
    from starlette.responses import JSONResponse

    def error(status: int, msg: str) -> JSONResponse:
        return JSONResponse({"error": " ".join(str(msg).split())[:300]}, status_code=status)

    @app.exception_handler(UserError)
    async def _user_error(request: Request, e: UserError):
        return error(400, str(e))

    @app.exception_handler(QueueFull)
    async def _busy(request: Request, e: QueueFull):
        return error(503, str(e))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, e: HTTPException):
        return error(e.status_code, "not found" if e.status_code == 404 else e.detail)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError):
        return error(400, f"bad request: {e.errors()[0].get('msg', 'invalid input') if e.errors() else ''}")

    @app.exception_handler(Exception)
    async def _crash(request: Request, e: Exception):
        return error(500, f"internal error: {type(e).__name__}: {e}")

    return error


def create_app(checkpoint: str | Path | None = None, *, out_dir: str | Path | None = None,
               limits: Limits | None = None, corpus: str | Path | None = None, device: str = "cpu",
               render: Callable[..., dict[str, Path]] | None = render_file, program: int = 0,
               cwd: str | Path | None = None, torch_threads: int | None = 1):
    """The playground app.

    Args:
        checkpoint: offered first and used by default; the shipped model and the runs under
            ``<cwd>/checkpoints`` are offered too.
        out_dir: where samples and renders are written (default: a fresh temporary folder).
        limits: upload size, samples, tokens and bars per request, queue length.
        corpus: an imported corpus folder with ``MANIFEST.tsv`` (default: the embedded O'Neill corpus).
        render: ``render_file(midi, out_dir, formats=..., program=..., split_tick=..., stem=...)``;
            ``None`` writes MIDI only.
        torch_threads: ``torch.set_num_threads`` for decoding (process-wide; ``None`` leaves it).
            One thread by default: 4 samples of 8 bars from the shipped model decoded in 2.2-3.0 s
            with 1 thread and 61-92 s with 2 on a 2-core machine where other jobs kept the load
            near 8; the render threads beside it want a core too.
    """
    _need_web()
    from fastapi import FastAPI

    from melodylm.dataset import DEFAULT_CORPUS

    if torch_threads is not None:
        import torch

        torch.set_num_threads(torch_threads)
    limits = limits or Limits()
    root = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="melodylm-serve-"))
    store = FileStore(root)
    pg = Playground(list_checkpoints(checkpoint, cwd), store,
                    RenderJobs(store, render) if render is not None else None,
                    Path(corpus) if corpus else DEFAULT_CORPUS, limits, device, program,
                    refresh=lambda: list_checkpoints(None, cwd))
    queue = GenerationQueue(limits.max_waiting)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        threading.Thread(target=pg.warm, name="melodylm-warm", daemon=True).start()
        yield
        queue.shutdown()
        if pg.renders is not None:
            pg.renders.shutdown()

    app = FastAPI(title="melodylm playground", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.playground, app.state.queue, app.state.store = pg, queue, store

    error = _error_handlers(app)

    _routes(app, pg, queue, store, limits, error)
    app.add_middleware(BodyLimit, limit=limits.max_upload_bytes + FORM_OVERHEAD)
    return app


def _routes(app, pg: Playground, queue: GenerationQueue, store: FileStore, limits: Limits, error) -> None:
    """The page, its assets, the JSON API and the written files: each route parses and calls ``pg``."""
    from fastapi import Request
    from starlette.responses import FileResponse, Response

    static = _static_files()

    @app.get("/")
    async def index():
        body, media = static["index.html"]
        return Response(body, media_type=media)

    @app.get("/static/{name}")
    async def static_file(name: str):
        if name not in static:
            return error(404, "not found")
        body, media = static[name]
        return Response(body, media_type=media, headers={"Cache-Control": "no-cache"})

    @app.get("/api/checkpoints")
    async def checkpoints():
        return {"checkpoints": pg.checkpoint_list(), "limits": vars(limits)}

    @app.get("/api/controls")
    async def controls(checkpoint: str = ""):
        # Loading a checkpoint reads a file of a few MB: off the event loop, as generation is.
        return await asyncio.to_thread(pg.controls, checkpoint.strip() or None)

    @app.get("/api/tunes")
    async def tunes(q: str = "", limit: int = 50):
        return {"tunes": list_tunes(pg.corpus, q[:200], max(1, min(limit, 500)))}

    @app.post("/api/sample")
    async def sample(request: Request):
        return await _sample(request, pg, queue, store, limits)

    @app.get("/api/batches/{bid}")
    async def batch(bid: str):
        b = store.get_batch(bid)
        return pg.batch_state(b) if b is not None else error(404, "not found")

    @app.get("/files/{bid}/{name:path}")
    async def files(bid: str, name: str):
        path = store.lookup(bid, name)  # a dict lookup: a request path is never joined onto a folder
        if path is None:
            return error(404, "not found")
        return FileResponse(path, media_type=MEDIA_TYPES.get(Path(name).suffix, "application/octet-stream"))


async def _sample(request, pg: Playground, queue: GenerationQueue, store: FileStore, limits: Limits) -> Any:
    """Parse the form, save an upload, queue the generation and wait for it."""
    from starlette.responses import JSONResponse

    try:
        form = await request.form(max_files=1, max_fields=20)
    except Exception as e:  # a malformed multipart body is the client's mistake
        raise UserError(f"bad form data: {e}") from None
    fields: dict[str, Any] = {}
    upload = None
    for key, value in form.multi_items():
        if key == "prompt" and hasattr(value, "read"):
            upload = value
        elif isinstance(value, str):
            fields[key] = value
        else:
            raise UserError(f"field {key!r}: only 'prompt' may be a file")
    req = parse_request(fields)
    batch = store.new_batch()
    if upload is not None:
        data = await upload.read()
        if len(data) > limits.max_upload_bytes:
            return JSONResponse({"error": f"prompt: {_size(len(data))} is over the upload limit of "
                                          f"{_size(limits.max_upload_bytes)}"}, status_code=413)
        name = safe_name(upload.filename or "prompt.mid")
        if not data:
            raise UserError(f"prompt {name}: empty file (0 bytes)")
        (batch.folder / "prompt").mkdir()
        req.prompt_file, req.prompt_name = batch.folder / "prompt" / name, name
        req.prompt_file.write_bytes(data)
    fut = queue.submit(pg.sample, req, batch)
    return await asyncio.wrap_future(fut)


def bind(host: str, port: int):
    """A listening TCP socket on ``host:port`` (port 0: any free one), or a one-line :class:`UserError`.

    Bound here rather than by uvicorn, so the printed URL carries the real port and a port in
    use is one line naming ``--port`` instead of a log record and exit code 1.
    """
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UserError(f"--host {host}: not an address of this machine ({e.strerror})") from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as e:
        sock.close()
        why = "is in use (pick another --port, or 0 for any free one)" if e.errno == errno.EADDRINUSE else \
            f"cannot be opened: {e.strerror or e}"
        raise UserError(f"--host {host} --port {port}: {why}") from None
    return sock


def serve(checkpoint: str | Path | None = None, host: str = "127.0.0.1", port: int = 8000, *,
          out_dir: str | Path | None = None, limits: Limits | None = None, device: str = "cpu",
          log_level: str = "warning", **options) -> None:
    """Run the playground under uvicorn and print its URL; blocks until interrupted.

    ``port`` 0 takes any free port (the printed URL has it). ``options`` go to :func:`create_app`
    (``corpus``, ``render``, ``program``, ``cwd``).
    """
    from melodylm.extras import require

    _need_web()
    uvicorn = require("uvicorn", "serve", "the playground")
    app = create_app(checkpoint, out_dir=out_dir, limits=limits, device=device, **options)
    sock = bind(host, port)
    real_port = sock.getsockname()[1]
    pg = app.state.playground
    default = next(iter(pg.checkpoints), None)
    shown = f"[{host}]" if ":" in host else host
    print(f"melodylm playground: http://{shown}:{real_port}/  (checkpoint {default or 'none'}; Ctrl+C stops)",
          flush=True)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=real_port, log_level=log_level))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
