"""melodylm: token-based language modelling of melodies."""

__version__ = "0.1.0"

# Loaded on first use so that `import melodylm` (and `melodylm --version`) stays light.
_LAZY = {"corpus_bleu": "melodylm.metrics.bleu", "sentence_bleu": "melodylm.metrics.bleu"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'melodylm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
