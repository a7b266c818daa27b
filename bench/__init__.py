"""Benchmarks: agentstream's relay against a post-once and a post-per-delta relay.

Run by hand with ``make bench`` (never part of ``make test``); results go to
``docs/benchmarks.md`` and ``docs/*.png``. See ``python -m bench --help``.
"""
