"""Secrets for the GitOps tree: only ever committed sealed for the sealed-secrets controller."""


from onecommit.errors import OnecommitError


class SecretsError(OnecommitError):
    """A secrets operation refused or failed; the message names the problem and the fix, and
    nothing was half-applied."""
