"""Store.add_outcome(idempotency_key=...): a retried feedback is stored once,
within the key time-to-live (Store.key_ttl_s)."""
import sqlite3
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

    def test_a_key_used_for_another_outcome_is_refused(self):
        store = llmroute.Store(self.path)
        try:
            self.assertIs(store.add_outcome("capital of france", "small", 1, 3,
                                            idempotency_key="fb-1"), True)
            # The same outcome, its numbers written otherwise: a retry.
            self.assertIs(store.add_outcome("capital of france", "small", True, 3.0,
                                            idempotency_key="fb-1"), False)
            for args in [("capital of spain", "small", 1, 3), ("capital of france", "big", 1, 3),
                         ("capital of france", "small", 0, 3),
                         ("capital of france", "small", 1, 4)]:
                with self.assertRaisesRegex(llmroute.InvalidInput,
                                            "idempotency_key 'fb-1' was used for another outcome",
                                            msg=repr(args)):
                    store.add_outcome(*args, idempotency_key="fb-1")
            with self.assertRaises(llmroute.InvalidInput):
                store.add_outcome("capital of france", "small", 1, 3, input_tokens=99,
                                  idempotency_key="fb-1")
            self.assertEqual(len(store), 1)
        finally:
            store.close()

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


def age_keys(path, seconds):
    """Make every key in the file `seconds` older, as time passing would:
    the store reads key times from the file when it looks a key up."""
    c = sqlite3.connect(path, timeout=30)
    with c:
        c.execute("UPDATE feedback_keys SET committed_at = committed_at - ?", (seconds,))
    c.close()


class StoreKeyTtlTest(support.StoreFileTestCase):
    def test_keys_are_remembered_for_a_day_by_default(self):
        store = llmroute.Store(self.path)
        try:
            self.assertEqual(store.key_ttl_s, 24 * 3600)
            self.assertIs(store.add_outcome("q", "small", 1, 3, idempotency_key="fb-1"), True)
            age_keys(self.path, 24 * 3600 - 60)  # a minute's margin for the test
            self.assertIs(store.add_outcome("q", "small", 1, 3, idempotency_key="fb-1"), False)
            age_keys(self.path, 60)
            self.assertIs(store.add_outcome("q", "small", 1, 3, idempotency_key="fb-1"), True)
            self.assertIs(store.add_outcome("q", "small", 1, 3, idempotency_key="fb-1"), False)
            self.assertEqual(len(store), 2)
        finally:
            store.close()

    def test_key_ttl_is_set_at_open_or_later(self):
        store = llmroute.Store(self.path, key_ttl_s=3600)
        try:
            self.assertEqual(store.key_ttl_s, 3600)
            self.assertIs(store.add_outcome("q", "small", 1, 3, idempotency_key="fb-1"), True)
            age_keys(self.path, 3600)
            self.assertIs(store.add_outcome("q", "small", 1, 3, idempotency_key="fb-1"), True)
            store.key_ttl_s = 0  # for good, for the keys stored from now on
            self.assertIs(store.add_outcome("q", "small", 1, 3, idempotency_key="fb-2"), True)
            age_keys(self.path, 100 * 365 * 86400)
            self.assertIs(store.add_outcome("q", "small", 1, 3, idempotency_key="fb-2"), False)
            # fb-1 keeps the hour it was stored with.
            self.assertIs(store.add_outcome("q", "small", 1, 3, idempotency_key="fb-1"), True)
            self.assertEqual(len(store), 4)
            store.key_ttl_s = 60.0  # a whole number, as a float
            self.assertEqual(store.key_ttl_s, 60)
        finally:
            store.close()

    def test_bad_key_ttl_is_refused_naming_it(self):
        for bad in [-1, 1.5, float("nan"), float("inf"), "60", True,
                    3153600001]:
            with self.assertRaises(llmroute.InvalidInput, msg=repr(bad)) as cm:
                llmroute.Store(self.path, key_ttl_s=bad)
            self.assertIn("key_ttl_s", str(cm.exception))
        store = llmroute.Store(self.path, key_ttl_s=120)
        try:
            for bad in [-1, 2.5, False, "x"]:
                with self.assertRaises(llmroute.InvalidInput, msg=repr(bad)):
                    store.key_ttl_s = bad
            self.assertEqual(store.key_ttl_s, 120)
        finally:
            store.close()


if __name__ == "__main__":
    unittest.main()
