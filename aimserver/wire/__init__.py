"""Bytes to values and back for OSCAR wire structures; no Twisted imports here."""
