"""The server's moving parts that know nothing of HTTP: written files, the generation queue, render jobs.

- :class:`FileStore` remembers every file the server wrote, by batch and name; nothing else can
  be fetched, so a request path is looked up in a dict and never joined onto a folder.
- :class:`GenerationQueue` runs one generation at a time (the model and the CPU cores are
  shared) and refuses work past a fixed number of waiting requests.
- :class:`RenderJobs` renders audio and sheet music in background threads (one per kind) while the
  page already shows the piano roll, and keeps each file's state for the page to poll.
"""

from __future__ import annotations

import secrets
import shutil
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


class QueueFull(Exception):
    """More requests are waiting than the server accepts; the caller should answer 503."""


@dataclass
class Batch:
    """The files of one ``/api/sample`` request, in their own folder."""

    id: str
    folder: Path
    files: dict[str, Path] = field(default_factory=dict)  # URL name -> file written by the server
    state: dict[str, str] = field(default_factory=dict)  # URL name -> "pending" | "ready" | "error: ..."
    seconds: dict[str, float] = field(default_factory=dict)  # URL name -> time its render job took


class FileStore:
    """Batches of files written by the server under one root; the oldest are deleted past ``keep``."""

    def __init__(self, root: Path, keep: int = 100):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self._batches: OrderedDict[str, Batch] = OrderedDict()
        self._lock = threading.Lock()

    def new_batch(self) -> Batch:
        """A fresh batch with an unguessable id and an empty folder."""
        with self._lock:
            bid = secrets.token_hex(8)
            batch = Batch(bid, self.root / bid)
            batch.folder.mkdir()
            self._batches[bid] = batch
            while len(self._batches) > self.keep:
                _, old = self._batches.popitem(last=False)
                shutil.rmtree(old.folder, ignore_errors=True)
            return batch

    def add(self, batch: Batch, name: str, path: Path, state: str = "ready") -> None:
        """Record ``path`` (a file the server wrote) as ``/files/<batch>/<name>``."""
        with self._lock:
            batch.files[name] = Path(path)
            batch.state[name] = state

    def set_state(self, batch: Batch, name: str, state: str) -> None:
        with self._lock:
            batch.state[name] = state

    def get_batch(self, bid: str) -> Batch | None:
        with self._lock:
            return self._batches.get(bid)

    def lookup(self, bid: str, name: str) -> Path | None:
        """The file behind ``/files/<bid>/<name>`` if the server wrote it and it is ready, else ``None``."""
        with self._lock:
            batch = self._batches.get(bid)
            if batch is None or batch.state.get(name) != "ready":
                return None
            path = batch.files.get(name)
        return path if path is not None and path.is_file() else None


class GenerationQueue:
    """One worker thread; at most ``max_waiting`` requests wait behind the running one."""

    def __init__(self, max_waiting: int = 4):
        self.max_waiting = max_waiting
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="melodylm-generate")
        self._lock = threading.Lock()
        self._in_flight = 0

    def submit(self, fn: Callable[..., Any], *args, **kwargs) -> Future:
        """Queue ``fn(*args, **kwargs)``; raise :class:`QueueFull` when the queue is full."""
        with self._lock:
            if self._in_flight >= 1 + self.max_waiting:
                raise QueueFull(f"the server is busy: {self._in_flight} requests are running or waiting; "
                                "try again in a few seconds")
            self._in_flight += 1
        try:
            fut = self._pool.submit(fn, *args, **kwargs)
        except BaseException:
            self._done(None)
            raise
        fut.add_done_callback(self._done)
        return fut

    def _done(self, _fut) -> None:
        with self._lock:
            self._in_flight -= 1

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class RenderJobs:
    """Background rendering: ``submit`` marks the batch's files pending and renders them in turn.

    Each group of formats has its own single thread (a "lane"): audio renders beside sheet music,
    never two of one kind at once, and always in the same thread: verovio (0.x, measured) loads
    MusicXML only in the thread that used it first; from any other thread ``loadData`` fails.
    ``render`` has the signature of ``melodylm.render.render_file``; its returned paths are
    recorded in the store under ``<stem>.<format>``. A failure marks the files with its one line.
    """

    def __init__(self, store: FileStore, render: Callable[..., dict[str, Path]]):
        self.store = store
        self.render = render
        self._lanes: dict[tuple[str, ...], ThreadPoolExecutor] = {}
        self._lock = threading.Lock()

    def _lane(self, formats: tuple[str, ...]) -> ThreadPoolExecutor:
        with self._lock:
            if formats not in self._lanes:
                self._lanes[formats] = ThreadPoolExecutor(1, thread_name_prefix=f"melodylm-render-{'-'.join(formats)}")
            return self._lanes[formats]

    def submit(self, batch: Batch, midi: Path, stem: str, formats: tuple[str, ...], **options) -> list[str]:
        """Schedule ``formats`` of ``midi`` on their lane; return the URL names they will have."""
        names = [f"{stem}.{fmt}" for fmt in formats]
        for name in names:
            self.store.add(batch, name, batch.folder / name, state="pending")
        self._lane(tuple(formats)).submit(self._run, batch, midi, stem, tuple(formats), options)
        return names

    def _run(self, batch: Batch, midi: Path, stem: str, formats: tuple[str, ...], options: dict) -> None:
        t0 = time.perf_counter()
        try:
            out = self.render(midi, batch.folder, formats=formats, stem=stem, **options)
        except Exception as e:  # any failure is shown on the page as its one line
            msg = " ".join(str(e).split()) or type(e).__name__
            for fmt in formats:
                self.store.set_state(batch, f"{stem}.{fmt}", f"error: {msg}")
            return
        for fmt in formats:
            name = f"{stem}.{fmt}"
            batch.seconds[name] = round(time.perf_counter() - t0, 4)
            path = out.get(fmt) if isinstance(out, dict) else None
            if path is not None and Path(path).is_file():
                self.store.add(batch, name, Path(path))
            else:
                self.store.set_state(batch, name, f"error: the renderer wrote no {fmt} file")

    def shutdown(self) -> None:
        for pool in self._lanes.values():
            pool.shutdown(wait=False, cancel_futures=True)
