import subprocess
import sys


def test_help_lists_the_settings() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "trine_core.cli", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0
    for flag in ("--target", "--config", "--data-dir", "--http-addr", "--worker-addr"):
        assert flag in out.stdout


def test_config_error_is_one_line_without_traceback(tmp_path: object) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "trine_core.cli", "--target", "nosuchrole"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert out.stderr.strip().startswith("trine: error: unknown role 'nosuchrole'")
    assert "Traceback" not in out.stderr
