"""The backend the gateway's settings select: Triton over HTTP or gRPC, or ONNX Runtime in
process. Apart from `backends.py` (the protocol every backend implements) so that no backend
module imports the one that chooses among them."""

from __future__ import annotations

from onecommit.gateway.backends import Backend, TritonHttpBackend
from onecommit.gateway.settings import GatewaySettings


def make_backend(settings: GatewaySettings) -> Backend:
    """The backend the settings select. The gRPC and ONNX backends are imported only when
    chosen: their libraries cost a gateway process seconds of start-up."""
    if settings.gateway_backend == "onnx":
        from onecommit.gateway.onnx_backend import OnnxBackend

        return OnnxBackend(settings.onnx_model_dir, settings.gateway_onnx_threads,
                           settings.triton_timeout_s)
    if settings.gateway_triton_protocol == "grpc":
        from onecommit.gateway.grpc_backend import TritonGrpcBackend

        return TritonGrpcBackend(settings.triton_grpc_target, settings.triton_timeout_s,
                                 settings.triton_grpc_channels)
    return TritonHttpBackend(settings.triton_url, settings.triton_timeout_s,
                             settings.triton_max_connections)
