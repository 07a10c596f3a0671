"""mxscan beyond one machine: ``--shard K/N`` (N independent scans of one list, each with a
1/N share of every politeness budget), ``mxscan merge`` (their N files into one, exactly
once, checked) and ``--cluster`` (one scan over a Ray cluster).

A second composition root beside ``mxscan/``: it wires the same engine, probes and results
store for several processes or machines, and a plain single-machine scan never imports
more of it than the two option parsers.
"""
