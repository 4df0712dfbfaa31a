from melodylm.cli import main

raise SystemExit(main())
