"""`inference.GRPCInferenceService`: the RPCs of KServe's grpc_predict_v2.proto plus Triton's `ModelConfig` and
`ModelStatistics`, answered by the same domain calls as REST `/v2` (app/api/routes/v2.py). The other Triton RPCs
(repository, shared memory, trace, log settings, streaming) answer UNIMPLEMENTED, from the generated base class."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from app import __version__
from app.core.deadline import Deadline
from app.core.errors import NotReadyError
from app.grpc import tensors
from app.grpc.calls import Shared, run_call
from app.services import oip
from app.services.inference import InferenceService
from app.services.oip_model import MODEL_VERSION, check_model, model_config
from app.services.oip_stats import ModelStats

Context = grpc.aio.ServicerContext


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """The service as `get_service()` returns it (None: not started, UNAVAILABLE), on the shared parts."""

    def __init__(self, shared: Shared, get_service: Callable[[], InferenceService | None], stats: ModelStats) -> None:
        self.shared = shared
        self.settings = shared.settings
        self.get_service = get_service
        self.stats = stats

    def _service(self) -> InferenceService:
        service = self.get_service()
        if service is None:
            raise NotReadyError("the service is not started")
        return service

    def _ready(self) -> bool:
        try:
            self._service().manager.ready_model()
        except NotReadyError:
            return False
        return True

    async def ServerLive(self, request: service_pb2.ServerLiveRequest, context: Context):
        async def work() -> service_pb2.ServerLiveResponse:
            return service_pb2.ServerLiveResponse(live=True)
        return await run_call(self.shared, "ServerLive", context, work)

    async def ServerReady(self, request: service_pb2.ServerReadyRequest, context: Context):
        async def work() -> service_pb2.ServerReadyResponse:
            return service_pb2.ServerReadyResponse(ready=self._ready())
        return await run_call(self.shared, "ServerReady", context, work)

    async def ModelReady(self, request: service_pb2.ModelReadyRequest, context: Context):
        async def work() -> service_pb2.ModelReadyResponse:
            check_model(self.settings, request.name, request.version or None)
            return service_pb2.ModelReadyResponse(ready=self._ready())
        return await run_call(self.shared, "ModelReady", context, work)

    async def ServerMetadata(self, request: service_pb2.ServerMetadataRequest, context: Context):
        async def work() -> service_pb2.ServerMetadataResponse:
            return service_pb2.ServerMetadataResponse(name="resnet-service", version=__version__,
                                                      extensions=oip.EXTENSIONS)
        return await run_call(self.shared, "ServerMetadata", context, work)

    async def ModelMetadata(self, request: service_pb2.ModelMetadataRequest, context: Context):
        async def work() -> service_pb2.ModelMetadataResponse:
            check_model(self.settings, request.name, request.version or None)
            metadata = oip.model_metadata(self._service().manager.model(), self.settings.model_name, MODEL_VERSION)
            return tensors.metadata_response(metadata)
        return await run_call(self.shared, "ModelMetadata", context, work)

    async def ModelConfig(self, request: service_pb2.ModelConfigRequest, context: Context):
        async def work() -> service_pb2.ModelConfigResponse:
            check_model(self.settings, request.name, request.version or None)
            return tensors.config_response(model_config(self._service().manager.model(), self.settings))
        return await run_call(self.shared, "ModelConfig", context, work)

    async def ModelStatistics(self, request: service_pb2.ModelStatisticsRequest, context: Context):
        async def work() -> service_pb2.ModelStatisticsResponse:
            # Triton: an empty name asks for every model; this server has one.
            check_model(self.settings, request.name or self.settings.model_name, request.version or None)
            return tensors.statistics_response(self.stats.as_dict(self.settings.model_name, MODEL_VERSION))
        return await run_call(self.shared, "ModelStatistics", context, work)

    async def ModelInfer(self, request: service_pb2.ModelInferRequest, context: Context):
        async def work() -> service_pb2.ModelInferResponse:
            return await self._infer(request, context)
        return await run_call(self.shared, "ModelInfer", context, work, needs_key=True)

    async def _infer(self, request: service_pb2.ModelInferRequest, context: Context) -> service_pb2.ModelInferResponse:
        """As `POST /v2/models/{name}/infer`: admission slot, the request deadline, the batcher, the statistics."""
        service = self._service()
        with self.shared.admission.slot():
            check_model(self.settings, request.model_name, request.model_version or None)
            deadline = self._deadline(context)
            with self.stats.request() as times:
                model = service.manager.model()
                spec = model.checkpoint.preprocess
                with times.compute_input():
                    parsed = tensors.parse_infer_request(request, channels=spec.channels, size=spec.crop,
                                                         max_items=self.settings.max_batch_files)
                probabilities = await service.infer(parsed.images, parsed.tensor, deadline, model, times.item)
                with times.compute_output():
                    return tensors.infer_response(parsed, probabilities, model.checkpoint.classes,
                                                  model_name=self.settings.model_name, model_version=MODEL_VERSION)

    def _deadline(self, context: Context) -> Deadline:
        """The call's deadline, or RESNET_REQUEST_TIMEOUT_S when it has none or a later one."""
        remaining = context.time_remaining()
        timeout = self.settings.request_timeout_s if remaining is None else min(remaining,
                                                                                self.settings.request_timeout_s)
        return Deadline(time.monotonic() + max(timeout, 0.0), self.settings.request_timeout_s)
