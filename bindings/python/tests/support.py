"""Shared by the binding's tests: puts the package in this checkout on the
path, and says whether the loaded libllmroute has smart routing."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = os.path.dirname(HERE)
if PACKAGE_ROOT not in sys.path:
    sys.path.insert(0, PACKAGE_ROOT)

import llmroute  # noqa: E402
from llmroute import _lib  # noqa: E402

MODELS = [
    {"name": "a", "backend": "openai", "cost_per_input_token": 1e-6,
     "cost_per_output_token": 2e-6},
    {"name": "b", "backend": "ollama", "hostname": "http://localhost:11434",
     "cost_per_input_token": 0, "cost_per_output_token": 0},
    {"name": "c", "backend": "vllm", "base_url": "http://localhost:8000/v1",
     "cost_per_input_token": 5e-6, "cost_per_output_token": 1.5e-5},
]


def smart_missing():
    """None when the library has the smart strategy and the store, else why not."""
    need = ("lr_store_open", "lr_store_import_file", "lr_store_count")
    absent = [n for n in need if not _lib.has(n)]
    if absent:
        return ("%s does not export %s: smart routing has not landed in this build"
                % (_lib.library_path, ", ".join(absent)))
    try:
        llmroute.Config({"models": [{"name": "m"}], "router": {"strategy": "smart"}})
    except llmroute.ConfigError as e:
        if "unknown strategy" in str(e):
            return "%s: %s" % (_lib.library_path, e)
        raise
    return None


import unittest  # noqa: E402


class SmartTestCase(unittest.TestCase):
    """Base of the smart-routing tests: skipped, with the reason, by a
    library without smart routing (run_tests.py reports that to ctest)."""

    @classmethod
    def setUpClass(cls):
        why = smart_missing()
        if why:
            raise unittest.SkipTest(why)
