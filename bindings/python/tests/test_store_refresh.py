"""Store.refresh: a handle reads what another connection to the same file
committed (another process's import beside a running gateway)."""
import unittest

import support  # puts the package on the path; StoreFileTestCase
import llmroute


class StoreRefreshTest(support.StoreFileTestCase):
    def test_refresh_reads_another_handles_commits_once(self):
        writer = llmroute.Store(self.path)
        reader = llmroute.Store(self.path)
        watcher = llmroute.Store(self.path, read_only=True)
        try:
            self.assertIs(reader.refresh(), False)
            writer.add_outcome("what is the capital of france", "small", 1, 3)
            writer.add("write a sorting function", [("big", 1, 40), ("small", 0, 20)])
            self.assertEqual(len(reader), 0)
            self.assertIs(reader.refresh(), True)
            self.assertEqual(len(reader), 2)
            self.assertIs(reader.refresh(), False)
            # The reader's own write is not news to it.
            reader.add_outcome("how far is the moon", "big", 1, 9)
            self.assertIs(reader.refresh(), False)
            self.assertEqual(len(reader), 3)
            self.assertEqual(len(watcher), 0)
            self.assertIs(watcher.refresh(), True)
            self.assertEqual(len(watcher), 3)
        finally:
            writer.close()
            reader.close()
            watcher.close()

    def test_rebuild_takes_in_the_handles_own_appends(self):
        store = llmroute.Store(self.path)
        try:
            self.assertEqual(store.added_since_build(), 0)
            self.assertIs(store.rebuild(), False)
            store.add_outcome("what is the capital of france", "small", 1, 3)
            store.add("write a sorting function", [("big", 1, 40), ("small", 0, 20)])
            self.assertEqual(store.added_since_build(), 2)
            self.assertIs(store.refresh(), False)  # its own writes are not news
            self.assertIs(store.rebuild(), True)
            self.assertEqual(store.added_since_build(), 0)
            self.assertEqual(len(store), 2)
            self.assertIs(store.rebuild(), False)
        finally:
            store.close()

    def test_query_store_refresh_sees_records_imported_elsewhere(self):
        qs = llmroute.QueryStore(self.path)
        other = llmroute.Store(self.path)
        try:
            gen = qs.generation
            other.import_records([{"query": "hello there", "input_token_length": 3,
                                   "outputs": [{"model_name": "a", "correctness": 1,
                                                "output_token_length": 2}]}])
            self.assertEqual(qs.count(), 0)
            self.assertIs(qs.refresh(), True)
            self.assertEqual(qs.count(), 1)
            self.assertEqual(qs.generation, gen + 1)
            self.assertIs(qs.refresh(), False)
            self.assertEqual(qs.generation, gen + 1)
        finally:
            other.close()
            qs.close()


if __name__ == "__main__":
    unittest.main()
