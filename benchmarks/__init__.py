"""Throughput / latency / memory harnesses (not timed tests). See benchmarks/din_throughput.py."""
