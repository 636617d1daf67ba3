"""Stage 3: output-layer adaptation, and new categories from classification images."""
