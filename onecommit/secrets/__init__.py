"""Secrets for the GitOps tree: only ever committed sealed for the sealed-secrets controller."""


class SecretsError(Exception):
    """A secrets operation refused or failed; the message names the problem and the fix, and
    nothing was half-applied."""
