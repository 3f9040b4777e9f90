"""The benchmark scenarios, one module per kind of measurement.

``ingest`` (backlog drain), ``latency`` (fixed-rate load), ``baselines`` (naive design, raw
limits), ``big_board`` (load, Redis queries, replay, memory), ``http`` (gateway queries) and
``profile`` (Projector.process under pyinstrument). Each ``run_*`` function measures and adds
its figures to the report.
"""
