"""``python -m pinflow`` is the ``pinflow`` command."""

from pinflow.cli import main

raise SystemExit(main())
