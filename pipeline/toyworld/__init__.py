"""The built-in dataset: a procedural world with ImageNet's layout and its domain gap."""
