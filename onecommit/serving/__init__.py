"""Model serving artefacts: the Triton model repository and its python-backend runtime."""
