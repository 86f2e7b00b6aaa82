"""``python -m lakeml.ops.cluster up|down|status|logs`` (what ./scripts/cluster.sh runs)."""

import signal
import sys

from lakeml.ops.cluster.stack import main

# `cluster.sh status | head -3`: a closed pipe ends the listing quietly, as it would for ls
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
sys.exit(main())
