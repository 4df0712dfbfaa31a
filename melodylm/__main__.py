"""``python -m melodylm``: the same command line as the ``melodylm`` script."""

from melodylm.cli import main

raise SystemExit(main())
