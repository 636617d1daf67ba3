"""Stage 5: the ILSVRC devkit's evaluation, the charts and the report."""
