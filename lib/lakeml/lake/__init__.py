"""The lake's raw side: the landing zone (``landing``: its batches; ``stores``: the file
systems it can be on; ``landing_ops``: upload, list, archive), reading landed files
(``readers``), typing them into bronze tables with a quarantine (``ingest``) and silver
tables (``silver``), and the data-quality gate (``quality``)."""
