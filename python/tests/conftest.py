"""Paths the tests share, as tests/test_paths.h has them for the C++ suite: the repository's
demo model and data, ../shared's Hugging Face references, and the `gptq` CLI binary the
numbers are compared with (GPTQ_TEST_BINARY overrides build/gptq)."""

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(os.environ.get("GPTQ_TEST_SOURCE_DIR", Path(__file__).resolve().parents[2]))
SHARED = Path(os.environ.get("GPTQ_TEST_SHARED_DIR", ROOT.parent / "shared"))
MODEL = ROOT / "models" / "stories15M"
REFERENCE = SHARED / "models" / "stories15M" / "reference"
DATA = ROOT / "data"
CLI = Path(os.environ.get("GPTQ_TEST_BINARY", ROOT / "build" / "gptq"))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """`gptq ARGS...` on the CPU; fails the test (not skips) when the binary is absent:
    scripts/test builds it before running pytest."""
    if not CLI.exists():
        pytest.fail(f"the gptq CLI is not built at {CLI} (cmake --build build --target gptq_cli)")
    r = subprocess.run([str(CLI), *args], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"gptq {' '.join(args)} failed ({r.returncode}): {r.stderr}")
    return r


def cli_json(*args: str):
    return json.loads(run_cli(*args).stdout)


def reference(name: str):
    f = REFERENCE / name
    if not f.exists():
        pytest.skip(f"Hugging Face reference {f} is absent (../shared not beside the checkout)")
    return f
