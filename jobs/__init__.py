"""Ray job entry points, one per stage: ``python -m jobs.<stage>`` or ``lsda <stage>``."""
