"""`python -m rag.cli`: the `rag` command without the installed entry point."""

import sys

from rag.cli import main

sys.exit(main())
