"""Stage 4: scoring windows, post-processing, the large vocabulary, outputs."""
