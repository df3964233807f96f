"""The model lifecycle: every step of the one-commit flow as a plain, tested function."""
