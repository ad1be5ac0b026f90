"""The aimserver benchmark suite: a uvloop load generator speaking real OSCAR,
Twisted baselines, and an orchestrator (``python -m bench.run``)."""
