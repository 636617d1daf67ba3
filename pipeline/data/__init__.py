"""Reading a dataset: the release layouts, categories, boxes, splits, the hierarchy."""
