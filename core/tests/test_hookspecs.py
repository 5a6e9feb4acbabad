"""Every hook is documented the way plugin authors need: when, what it receives, what it returns."""

import inspect

from trine_core import hookspecs


def test_every_hookspec_is_documented() -> None:
    specs = [f for name, f in vars(hookspecs).items() if name.startswith("trine_")]
    assert specs, "no hookspecs found"
    for spec in specs:
        doc = inspect.getdoc(spec) or ""
        assert "Called" in doc, f"{spec.__name__}: say when it is called"
        assert ":return:" in doc, f"{spec.__name__}: say what it returns"
        for param in inspect.signature(spec).parameters:
            assert f":param {param}:" in doc, f"{spec.__name__}: document {param}"
