#!/usr/bin/env bash
# Wheel smoke test: build the wheel, install it into a fresh venv, run the card's four commands
# (tokenize, train, sample, bleu) on the defaults from an empty folder. Proves the package works
# without the repository checkout. 243 s on two shared cores with evaluate as a fifth step, which
# took 34 s of it: it is left out here, and tests/test_resources.py runs it on the defaults of a
# package-data-only install.
#
#   .ci/wheel-smoke.sh                 # uses ./.venv/bin/python (or $PYTHON) to build
#   SMOKE_KEEP=1 .ci/wheel-smoke.sh    # keep the temp folder for a look afterwards
#
# torch is not reinstalled: a folder of links to the build environment's torch and its own
# dependencies (nothing else) is put on the fresh venv's path, because unpacking the 700 MB
# torch wheel takes minutes on two busy cores. Every other dependency is installed from the wheel's
# metadata (from the pip cache after the first run).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$REPO/.venv/bin/python}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/melodylm-wheel-smoke.XXXXXX")"
[ -n "${SMOKE_KEEP:-}" ] || trap 'rm -rf "$WORK"' EXIT
t0=$SECONDS
step() { echo "== [$((SECONDS - t0))s] $*"; }

step "copy the tree (tracked and untracked, not ignored files): a stale build/ cannot reach the wheel"
mkdir -p "$WORK/src" "$WORK/wheel" "$WORK/run"
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$WORK/src")

step "build the wheel"
"$PY" -m pip wheel "$WORK/src" --no-deps -w "$WORK/wheel" -q
WHEEL="$(ls "$WORK"/wheel/melodylm-*.whl)"

step "fresh venv, torch linked from $PY"
"$PY" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
SITE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"$PY" - "$WORK/torch-site" "$SITE/_melodylm_smoke_torch.pth" <<'PYEOF'
"""Link torch and its dependencies (installed files and metadata only) into one folder."""
import sys
from importlib import metadata
from pathlib import Path

try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement

out, pth = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir()
todo, seen = ["torch"], set()
while todo:
    name = todo.pop()
    dist = metadata.distribution(name)
    key = dist.metadata["Name"].lower().replace("_", "-")
    if key in seen:
        continue
    seen.add(key)
    root = Path(dist.locate_file(""))
    tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
    for top in tops:
        if (root / top).exists() and not (out / top).exists() and top != "__pycache__":
            (out / top).symlink_to(root / top)
    for req in dist.requires or []:
        r = Requirement(req)
        if r.marker is None or r.marker.evaluate({"extra": ""}):
            todo.append(r.name)
pth.write_text(str(out) + "\n")
print(f"linked {len(seen)} distributions: {', '.join(sorted(seen))}")
PYEOF

step "install the wheel and its other dependencies"
"$VPY" -m pip install -q --no-compile --disable-pip-version-check "$WHEEL"
ML="$WORK/venv/bin/melodylm"

cd "$WORK/run"
export PYTHONNOUSERSITE=1 PYTHONPATH=
step "the installed package, not the checkout"
"$VPY" -c "import melodylm, sys; p = melodylm.__file__; print(p); sys.exit(0 if p.startswith('$WORK/venv') else 1)"
"$ML" --version
"$ML" info | tee info.txt
grep -q '^corpus: .*_bundled.*(package data)' info.txt
grep -q '^model: .*_bundled.*(package data)' info.txt

step "tokenize (embedded corpus -> data/default)"
"$ML" tokenize --no-progress
step "train a few steps"
"$ML" train --arch gpt --size tiny --max-steps 4 --eval-interval 4 --set batch_size=4 --set eval_batches=2 \
    --set sample_tokens=0 --no-progress
ls checkpoints/*/best.pt
step "sample (the run just trained is the default)"
"$ML" sample --max-tokens 40 --json | tail -1 | tee sample.json
grep -q '"out_dir": "samples/gpt-' sample.json
step "bleu on the newest samples"
"$ML" bleu --weights custom --human none
step "done: wheel smoke test passed in $((SECONDS - t0))s"
