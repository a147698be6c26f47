"""The smart-routing classes against misuse that crashed, hung or silently
did something else (copies, an embed function that writes to its own
store, a model name where QueryStore takes a path, ...), and current
AIOS's SmartRouting.available_models."""
import os
import tempfile
import unittest

import support  # noqa: F401  (puts the package on the path)
from support import CountingEmbed, SmartTestCase, priced
from test_copy import check_refused
from test_errors import run_apart

import llmroute
from llmroute import InvalidType, QueryStore, SmartRouting

NAMES = ["cheap", "strong"]
CONFIGS = priced(NAMES, [(1e-7, 2e-7), (1e-5, 3e-5)])


def records(n=3):
    return [{"query": "question number %d" % i, "input_token_length": 8,
             "outputs": [{"model_name": "cheap", "correctness": i % 2,
                          "output_token_length": 20},
                         {"model_name": "strong", "correctness": 1,
                          "output_token_length": 40}]} for i in range(n)]


class CopyIsRefusedTest(SmartTestCase):
    """As test_copy.py, for SmartRouting (a copy failed with "cannot pickle
    '_thread.lock'" or shared the routers and the store) and QueryStore."""

    def test_smart_routing(self):
        check_refused(self, "SmartRouting", "SmartRouting(M)",
                      "assert x.llm_configs == M and len(x.get_model_idxs(M, ['q'])) == 1",
                      "build a new SmartRouting(llm_configs, ...), with the same store_path")

    def test_query_store(self):
        check_refused(self, "QueryStore", "QueryStore()", "assert x.count() == 0",
                      "open another QueryStore(path=...) on the same file")


if __name__ == "__main__":
    unittest.main()
