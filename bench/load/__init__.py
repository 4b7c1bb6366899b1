"""Load generation: the orchestrator, the loader fleet and its messages, histograms, the knee."""
