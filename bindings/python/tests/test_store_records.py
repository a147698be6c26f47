"""What the store takes from Python: Store.add and add_outcome check a record
on the rules import_records checks it on."""
import unittest

import support  # noqa: F401  (puts the package on the path)
import llmroute


def rec(query, *outs, **kw):
    r = {"query": query,
         "outputs": [{"model_name": m, "correctness": c, "output_token_length": o}
                     for m, c, o in outs]}
    r.update(kw)
    return r


class AddRulesTest(unittest.TestCase):
    def setUp(self):
        self.store = llmroute.Store()

    def tearDown(self):
        self.store.close()

    def refused(self, text, fn, *args, **kw):
        with self.assertRaises(llmroute.InvalidInput) as cm:
            fn(*args, **kw)
        self.assertIn(text, str(cm.exception))
        self.assertEqual(len(self.store), 0)

    def test_a_model_named_twice_is_refused_as_import_refuses_it(self):
        self.refused("outputs[1].model_name: 'm' appears twice",
                     self.store.add, "q", [("m", 1, 3), ("m", 0, 30)])
        rep = self.store.import_records([rec("q", ("m", 1, 3), ("m", 0, 30))], strict=False)
        self.assertEqual(rep.bad, 1)
        self.assertIn("outputs[1].model_name: 'm' appears twice", rep.first_bad)

    def test_token_counts_over_the_cap_are_refused(self):
        self.refused("outputs[0].output_token_length: 1000000001 is over the cap of 1000000000",
                     self.store.add, "q", [("m", 1, 1000000001)])
        self.refused("input_token_length: 1000000001 is over the cap of 1000000000",
                     self.store.add, "q", [("m", 1, 3)], input_tokens=1000000001)
        self.refused("outputs[0].output_token_length: 1000000001 is over the cap",
                     self.store.add_outcome, "q", "m", 1, 1000000001)
        self.refused("input_token_length: 1000000001 is over the cap",
                     self.store.add_outcome, "q", "m", 1, 3, input_tokens=1000000001)
        self.refused("output_token_length: 2000000000 is over the cap",
                     self.store.add_outcome, "q", "m", 1, 2e9, idempotency_key="k")
        # The refused keyed append took no key.
        self.assertIs(self.store.add_outcome("q", "m", 1, 3, idempotency_key="k"), True)
        self.store.add("q", [("m", 1, 1000000000)], input_tokens=1000000000)
        self.assertEqual(len(self.store), 2)


if __name__ == "__main__":
    unittest.main()
