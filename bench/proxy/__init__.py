"""The proxy benchmark's parts: processes, wrk, micro-benchmarks, profiles and the report.

The entry point is ``bench/run`` (or ``python -m bench.proxy_bench``); see bench/README.md.
"""
