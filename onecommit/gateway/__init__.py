"""The serving gateway in front of Triton: Open Inference Protocol (KServe v2)."""
