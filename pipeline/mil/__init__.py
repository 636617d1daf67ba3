"""Multiple-instance refinement of held-out rows from their classification images."""
