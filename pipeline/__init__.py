"""LSDA library: readers, the built-in dataset, and (later) proposals, models, adaptation."""
