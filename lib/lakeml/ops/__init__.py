"""Running things: the spark-submit wrapper (``submit``), fail-fast checks of the servers an
env needs (``preflight``), and the cluster stack on one machine (``cluster``)."""
