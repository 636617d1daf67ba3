"""Stage 0: proposals and warped windows, sharded over Ray Data."""
