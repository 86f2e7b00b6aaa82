"""The lake's raw side: the landing zone (``landing``, ``landing_ops``), reading landed
files (``readers``), typing them into bronze tables with a quarantine (``ingest``), and the
data-quality gate (``quality``)."""
