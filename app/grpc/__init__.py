"""The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`), in the same process as HTTP.

`server.py` starts and drains the grpc.aio server in the app's lifespan, `servicer.py` answers the RPCs through
the same domain calls as `/v2`, `tensors.py` translates protobuf <-> app/services/oip.py, `status.py` maps errors
to gRPC status codes. The generated stubs are the ones tritonclient ships (`tritonclient.grpc.service_pb2`).
"""
