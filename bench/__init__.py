"""Benchmarks run by `invoke bench`; each module has a `main() -> int`."""
