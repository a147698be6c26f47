"""Store.add_outcome(idempotency_key=...): a retried feedback is stored once."""
import unittest

import support  # puts the package on the path; StoreFileTestCase
import llmroute


class StoreKeysTest(support.StoreFileTestCase):
    def test_same_key_is_recorded_once(self):
        store = llmroute.Store(self.path)
        try:
            self.assertIs(store.add_outcome("capital of france", "small", 1, 3,
                                            idempotency_key="fb-1"), True)
            self.assertIs(store.add_outcome("capital of france", "small", 1, 3,
                                            idempotency_key="fb-1"), False)
            self.assertEqual(len(store), 1)
            self.assertIs(store.add_outcome("capital of france", "small", 1, 3,
                                            idempotency_key="fb-2"), True)
            self.assertEqual(len(store), 2)
            # Without a key: recorded every time, as before.
            self.assertIs(store.add_outcome("capital of france", "small", 1, 3), True)
            self.assertIs(store.add_outcome("capital of france", "small", 1, 3), True)
            self.assertEqual(len(store), 4)
        finally:
            store.close()
        # The key is in the file: another handle (or a reopen) sees it.
        other = llmroute.Store(self.path)
        try:
            self.assertIs(other.add_outcome("capital of france", "small", 1, 3,
                                            idempotency_key="fb-2"), False)
            self.assertEqual(len(other), 4)
        finally:
            other.close()

    def test_bad_keys_are_refused_and_store_nothing(self):
        store = llmroute.Store(self.path)
        try:
            for key in ["", "a b", "tab\there", "caf\u00e9", "k" * 256]:
                with self.assertRaises(llmroute.InvalidInput, msg=repr(key)):
                    store.add_outcome("q", "small", 1, 3, idempotency_key=key)
            with self.assertRaises(TypeError):
                store.add_outcome("q", "small", 1, 3, idempotency_key=7)
            self.assertEqual(len(store), 0)
            self.assertIs(store.add_outcome("q", "small", 1, 3, idempotency_key="k" * 255), True)
        finally:
            store.close()


if __name__ == "__main__":
    unittest.main()
