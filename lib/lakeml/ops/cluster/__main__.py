"""``python -m lakeml.ops.cluster up|down|status|logs`` (what ./scripts/cluster.sh runs)."""

import sys

from lakeml.ops.cluster.stack import main

sys.exit(main())
