"""The playground: a web page and JSON API over :mod:`melodylm.generate` and :mod:`melodylm.render`.

Install with ``pip install 'melodylm[serve]'``. Start it with :func:`serve` (bound to 127.0.0.1
unless ``host`` says otherwise) or build the app with :func:`create_app`.

JSON API:

- ``GET /api/checkpoints`` -> ``{"checkpoints": [{"name", "file", "run", "default"}], "limits": {...}}``
- ``GET /api/controls?checkpoint=NAME`` -> ``{"checkpoint", "values": {"key", "meter", "style"}, "fill",
  "reasons"}``: what the checkpoint can be steered by, and for what it lacks, why (one line)
- ``GET /api/tunes?q=WORDS`` -> ``{"tunes": [{"file", "title", "notes"}]}`` (the embedded corpus)
- ``POST /api/sample`` (multipart): optional file ``prompt``, or field ``tune`` (a corpus file);
  fields ``n``, ``prompt_bars``, ``max_bars``, ``max_tokens``, ``temperature``, ``top_p``, ``seed``,
  ``checkpoint``; steering as ``melodylm sample`` steers: ``fill`` (bars ``A:B`` of the prompt),
  ``key``, ``meter``, ``style``. Answers ``{"samples": [{"midi", "audio", "score", "musicxml", "pianoroll", "notes",
  ...}], "signature", "status"}``. The MIDI is written before the answer; audio, sheet music and
  the piano-roll image render in the background: ``GET status`` says which files are ready.
  The same inputs and seed give the same MIDI bytes.
- ``GET /api/batches/ID`` -> ``{"files": {"sample_000.wav": "ready" | "pending" | "error: ..."}}``
- ``GET /files/ID/NAME``: a file the server wrote; anything else is 404.

Errors are ``{"error": "one line"}``: 400 for bad input, 404, 413 for an upload over the limit,
503 when the queue is full.
"""

from melodylm.serve.app import create_app, serve
from melodylm.serve.playground import Limits

__all__ = ["Limits", "create_app", "serve"]
