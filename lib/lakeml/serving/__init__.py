"""Serving beyond the nightly batch: the online feature store (``store``, filled by
``materialize``), the ASGI scoring server (``app``, ``models``, ``predict``, ``metrics``,
started by ``scripts/serve.sh``) and its answer log (``answer_log``), and streaming scoring
(``stream``, ``stream_records``, ``stream_score``: ``jobs/stream.py``)."""
