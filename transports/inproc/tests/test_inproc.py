import pytest

from trine_core import Backend, ConfigError, Dispatcher
from trine_transport_inproc import InprocTransport


async def test_connect_returns_the_served_object() -> None:
    transport = InprocTransport()
    engine = object()
    await transport.serve(Backend, engine, "inproc://main")  # type: ignore[arg-type]
    assert await transport.connect(Backend, "inproc://main") is engine


async def test_connect_to_nothing_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="nothing in this process serves dispatcher"):
        await InprocTransport().connect(Dispatcher, "inproc://")
