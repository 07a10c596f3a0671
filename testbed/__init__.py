"""The local mail Internet used by tests, demos and benchmarks."""
