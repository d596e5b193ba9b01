"""Allow `python -m ociruntime`."""

from ociruntime.cli import main

raise SystemExit(main())
