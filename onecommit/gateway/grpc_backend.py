"""Triton over gRPC, for the gateway's `gateway_triton_protocol: grpc`."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from onecommit.gateway.backends import BackendResponse, error_response, retrying, unreachable
from onecommit.gateway.errors import BackendUnavailable
from onecommit.gateway.tensors import (
    InferRequest,
    InvalidRequest,
    encode_response,
    from_raw,
    header_length,
    parse_request,
    to_raw,
)

# gRPC status → the HTTP status Triton's REST API gives for the same fault. UNAVAILABLE and
# DEADLINE_EXCEEDED are not here: they mean the server did not answer (BackendUnavailable).
_GRPC_STATUS = {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.NOT_FOUND: 404,
                grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.RESOURCE_EXHAUSTED: 429}
_UNANSWERED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def _transient(error: Exception) -> bool:
    return isinstance(error, grpc.aio.AioRpcError) and error.code() in _UNANSWERED


class TritonGrpcBackend:
    """Triton's gRPC API over a small pool of HTTP/2 channels used round-robin (one channel
    multiplexes many calls; several spread them over connections). The v2 REST body is decoded
    into a ModelInferRequest and the reply encoded back, so callers see the same bytes as over
    HTTP. Reads are retried on UNAVAILABLE; inference never is."""

    def __init__(self, target: str, timeout_s: float, channels: int,
                 read_retries: int = 2) -> None:
        # Triton is trusted and the gateway already bounds the request size.
        options = [("grpc.max_receive_message_length", -1),
                   ("grpc.max_send_message_length", -1)]
        self._channels = [grpc.aio.insecure_channel(target, options=options)
                          for _ in range(channels)]
        self._stubs = itertools.cycle(
            [service_pb2_grpc.GRPCInferenceServiceStub(c) for c in self._channels])
        self._timeout_s = timeout_s
        self._read_retries = read_retries

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    async def _read(self, method: str, request: Any) -> Any:
        stub = next(self._stubs)
        try:
            return await retrying(
                lambda: getattr(stub, method)(request, timeout=self._timeout_s),
                _transient, self._read_retries)
        except grpc.aio.AioRpcError as error:
            if error.code() in _UNANSWERED:
                raise BackendUnavailable(unreachable(error)) from error
            raise

    async def ready(self) -> bool:
        try:
            return bool((await self._read("ServerReady", service_pb2.ServerReadyRequest())).ready)
        except (BackendUnavailable, grpc.aio.AioRpcError):
            return False

    async def version_ready(self, model: str, version: int | None) -> bool:
        request = service_pb2.ModelReadyRequest(name=model, version=str(version or ""))
        try:
            return bool((await self._read("ModelReady", request)).ready)
        except (BackendUnavailable, grpc.aio.AioRpcError):
            return False

    async def metadata(self, model: str, version: int | None) -> dict[str, Any] | None:
        request = service_pb2.ModelMetadataRequest(name=model, version=str(version or ""))
        try:
            reply = await self._read("ModelMetadata", request)
        except grpc.aio.AioRpcError:
            return None
        return {"name": reply.name, "versions": list(reply.versions), "platform": reply.platform,
                "inputs": [_tensor_meta(t) for t in reply.inputs],
                "outputs": [_tensor_meta(t) for t in reply.outputs]}

    async def infer(self, model: str, version: int | None, body: bytes,
                    headers: Mapping[str, str]) -> BackendResponse:
        try:
            request = parse_request(body, header_length(headers))
        except InvalidRequest as error:
            return error_response(400, str(error))
        message = _grpc_request(model, version, request)
        try:
            reply = await next(self._stubs).ModelInfer(message, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as error:
            if error.code() in _UNANSWERED:
                raise BackendUnavailable(unreachable(error)) from error
            return error_response(_GRPC_STATUS.get(error.code(), 500),
                                  error.details() or str(error))
        outputs = [from_raw(o.name, o.datatype, list(o.shape), raw)
                   for o, raw in zip(reply.outputs, reply.raw_output_contents, strict=True)]
        body, response_headers = encode_response(reply.model_name, reply.model_version,
                                                 request, outputs)
        return BackendResponse(200, body, response_headers)


def _tensor_meta(tensor: Any) -> dict[str, Any]:
    return {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}


def _grpc_request(model: str, version: int | None, request: InferRequest) -> Any:
    message = service_pb2.ModelInferRequest(
        model_name=model, model_version=str(version or ""), id=request.id or "",
        inputs=[service_pb2.ModelInferRequest.InferInputTensor(
            name=t.name, datatype=t.datatype, shape=list(t.array.shape)) for t in request.inputs],
        raw_input_contents=[to_raw(t) for t in request.inputs])
    if request.outputs is not None:
        message.outputs.extend(service_pb2.ModelInferRequest.InferRequestedOutputTensor(name=n)
                               for n in request.outputs)
    return message
