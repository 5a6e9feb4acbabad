from trine_proto.addresses import worker_address, worker_scheme


def test_a_bare_address_is_grpcs_and_a_scheme_is_kept() -> None:
    assert worker_address(" 127.0.0.1:7481 ") == "grpc://127.0.0.1:7481"
    assert worker_address("tcp://h:1") == "tcp://h:1"
    assert worker_scheme("[::1]:7481") == "grpc"
    assert worker_scheme("TCP://h:1") == "tcp"
