"""Secrets for the GitOps tree: only ever committed sealed for the sealed-secrets controller."""
