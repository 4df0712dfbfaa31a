"""``melodylm serve``: the playground, a web page for generating, hearing and iterating on melodies."""

from __future__ import annotations

import ipaddress
import sys

from melodylm.cli.common import add_command


def register_serve(sub):
    p = add_command(sub, "serve", "start the playground: a web page to generate, hear, download and iterate on "
                                  "melodies (needs the 'serve' extra)",
                    "melodylm serve --port 8000   # then open http://127.0.0.1:8000/")
    p.add_argument("--checkpoint", default=None, metavar="CKPT",
                   help="checkpoint file or run folder offered first and used by default (the shipped model and "
                        "the runs under ./checkpoints are offered too)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 takes any free port)")
    p.add_argument("--device", default="cpu", help="auto | cpu | cuda | cuda:N | mps (default cpu)")
    p.add_argument("-o", "--out", default=None, metavar="DIR",
                   help="folder for the samples and renders (default: a fresh temporary folder)")
    return p


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_serve(args) -> int:
    """Check the web stack and the flags, then serve until Ctrl+C."""
    from melodylm.device import pick_device
    from melodylm.errors import UserError
    from melodylm.extras import require

    for module in ("fastapi", "uvicorn", "multipart"):  # one line naming the extra, before anything loads
        require(module, "serve", "melodylm serve")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: must be 0..65535 (0 takes any free port)")
    device = str(pick_device(args.device))
    from melodylm.serve import serve

    if not _loopback(args.host):
        print(f"melodylm: --host {args.host}: the playground is reachable from other machines; it has no "
              "login, so anyone who reaches it can generate", file=sys.stderr)
    serve(args.checkpoint, args.host, args.port, out_dir=args.out, device=device)
    return 0
