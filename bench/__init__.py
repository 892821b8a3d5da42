"""Benchmarks (`make bench`): throughput and latency of the kernel and the local host."""
