"""mxscan's protocol-agnostic engine: status vocabulary, record codec,
domain-list input, scheduler, keyed limits, single-flight cache, checkpointed
NDJSON store and progress reporting.  Nothing here knows about DNS, SMTP or
HTTP; ``tests/unit/test_layering.py`` keeps it so.
"""
