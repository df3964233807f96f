"""Invoke task modules; `tasks.py` at the project root composes them."""
