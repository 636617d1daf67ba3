"""Stages 1-2: classification and detection fine-tuning with Ray Train."""
