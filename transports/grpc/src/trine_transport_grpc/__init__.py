"""trine-transport-grpc: roles in separate processes, talking gRPC."""

from trine_transport_grpc.plugin import GrpcTransport

__all__ = ["GrpcTransport"]
