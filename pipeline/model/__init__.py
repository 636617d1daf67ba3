"""The networks, their preprocessing, trainable layer sets and model files."""
