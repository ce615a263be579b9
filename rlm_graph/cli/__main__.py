"""``python -m rlm_graph.cli``: the same as the ``rlm-graph`` command."""

import sys

from rlm_graph.cli import main

sys.exit(main())
