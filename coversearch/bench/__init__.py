"""Benchmarks of the index layer: data sets, parameter sweeps, measurements and reports.

Used by ``coversearch bench search`` and ``benchmarks/bench_search.py``; nothing else in the
package imports it.
"""
