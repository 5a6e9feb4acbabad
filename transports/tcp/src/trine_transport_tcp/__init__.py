"""trine-transport-tcp: the coordinator's worker port as length-prefixed protobuf frames on plain
TCP (``tcp://host:port``), the lean alternative to the grpc transport's HTTP/2 stream."""

from trine_transport_tcp.plugin import TcpTransport

__all__ = ["TcpTransport"]
