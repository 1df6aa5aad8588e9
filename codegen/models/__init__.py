"""Models made of chained kernels: the Whisper encoder (checkpoint, quantisation, graph, golden)."""
