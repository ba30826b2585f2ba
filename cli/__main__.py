"""``python -m pcaq.cli``: the ``pcaq`` command without its console script."""

import sys

from pcaq.cli.main import main

sys.exit(main())
