"""Twisted protocols: frame, parse, dispatch and write. Nothing else."""
