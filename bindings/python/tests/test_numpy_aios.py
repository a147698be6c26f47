"""AIOS's QueryStore.predict returns numpy arrays; so does the binding's
when numpy can be imported (run by ctest as python.numpy, with an
interpreter that has numpy)."""
import unittest

import numpy as np

import support  # noqa: F401  (puts the package on the path)
from support import SmartTestCase

from llmroute import QueryStore

RECORDS = [{"query": "hard proof about prime gaps %d" % i, "input_token_length": 9,
            "outputs": [{"model_name": "cheap", "correctness": 0, "output_token_length": 20},
                        {"model_name": "strong", "correctness": 1,
                         "output_token_length": 40}]} for i in range(4)]


class PredictArraysTest(SmartTestCase):
    def test_predict_returns_two_float_arrays_of_queries_by_models(self):
        q = QueryStore()
        q.add_data(RECORDS)
        perf, length = q.predict(["hard proof about prime gaps", "prime gaps"],
                                 [{"name": "strong"}, {"name": "cheap"}, {"name": "x"}],
                                 n_similar=4)
        for a in (perf, length):
            self.assertIsInstance(a, np.ndarray)
            self.assertEqual(a.shape, (2, 3))
            self.assertEqual(a.dtype, np.float64)
        self.assertEqual(perf.tolist(), [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
        self.assertEqual(length.tolist(), [[40.0, 20.0, 0.0], [40.0, 20.0, 0.0]])
        # As AIOS's get_model_idxs reads them: the first row.
        self.assertEqual(int(np.argmax(perf[0])), 0)

    def test_empty_store(self):
        perf, length = QueryStore().predict("q", ["a", "b"])
        self.assertEqual(perf.shape, (1, 2))
        self.assertFalse(perf.any() or length.any())


if __name__ == "__main__":
    unittest.main()
