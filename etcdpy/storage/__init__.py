"""Durable state in LMDB (see schema.py for the layout)."""
