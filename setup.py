"""Build hook: the wheel carries the embedded corpus and the shipped model as package data.

They live in the repository's top-level ``corpora/oneills1850/`` and
``checkpoints/pretrained/model.pt`` (where the design keeps them); ``build_py`` copies them to
``melodylm/_bundled/`` inside the build, where :mod:`melodylm.resources` finds them once installed.
An editable install skips the copy: it reads them from the checkout. Everything else is in setup.cfg.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
# (source under the repository, destination under melodylm/_bundled, glob of the files to take)
BUNDLE = [
    ("corpora/oneills1850", "corpora/oneills1850", "*.mid"),
    ("corpora/oneills1850", "corpora/oneills1850", "MANIFEST.tsv"),
    ("corpora", "corpora", "README.md"),
    ("checkpoints/pretrained", "checkpoints/pretrained", "model.pt"),
    ("checkpoints/pretrained", "checkpoints/pretrained", "README.md"),
    ("checkpoints/pretrained", "checkpoints/pretrained", "recipe*.toml"),
]
REQUIRED = ("corpora/oneills1850/*.mid", "checkpoints/pretrained/model.pt")


class BuildWithData(build_py):
    """build_py that also copies the corpus and the shipped model into the package."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for pattern in REQUIRED:  # a wheel without them would break the card's commands
            if not any(HERE.glob(pattern)):
                raise SystemExit(f"cannot build melodylm: {pattern} is missing from {HERE}")
        self._bundled = []
        for src, dst, glob in BUNDLE:
            out = Path(self.build_lib) / "melodylm" / "_bundled" / dst
            out.mkdir(parents=True, exist_ok=True)
            for f in sorted((HERE / src).glob(glob)):
                shutil.copy2(f, out / f.name)
                self._bundled.append(str(out / f.name))

    def get_outputs(self, include_bytecode=1):
        return super().get_outputs(include_bytecode) + list(getattr(self, "_bundled", []))


setup(cmdclass={"build_py": BuildWithData})
