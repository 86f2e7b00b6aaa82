"""Serving beyond the nightly batch: the online feature store (``store``, filled by
``materialize``), the ASGI scoring server (``app``, started by ``scripts/serve.sh``) and its
answer log (``answer_log``)."""
