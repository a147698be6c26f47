"""What the store takes from Python: Store.add and add_outcome check a record
on the rules import_records checks it on, import_records' messages name the
records (not the file it goes through), and an embedder id no store can be
used with is refused when the store would be made."""
import json
import os
import subprocess
import tempfile
import unittest

import support  # puts the package on the path; StoreFileTestCase
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

    def test_outcomes_that_are_no_list_name_the_argument(self):
        # None raised TypeError: 'NoneType' object is not iterable.
        for bad in (None, 5, "m", {"model_name": "m", "correctness": 1,
                                   "output_token_length": 3}):
            with self.subTest(bad=bad):
                self.refused("outcomes: expected a list of (model, correctness, output_tokens) "
                             "tuples or outcome dicts, got %s" % type(bad).__name__,
                             self.store.add, "q", bad)
        # A generator is a list of outcomes.
        self.store.add("q", (o for o in [("m", 1, 3), ("n", 0, 30)]))
        self.assertEqual(len(self.store), 1)

    def test_token_counts_over_the_cap_are_refused(self):
        self.refused("outputs[0].output_token_length: 1000000001 is over the cap of 1000000000",
                     self.store.add, "q", [("m", 1, 1000000001)])
        self.refused("Store.add: input_tokens: 1000000001 is over the cap of 1000000000",
                     self.store.add, "q", [("m", 1, 3)], input_tokens=1000000001)
        self.refused("outputs[0].output_token_length: 1000000001 is over the cap",
                     self.store.add_outcome, "q", "m", 1, 1000000001)
        self.refused("Store.add_outcome: input_tokens: 1000000001 is over the cap",
                     self.store.add_outcome, "q", "m", 1, 3, input_tokens=1000000001)
        self.refused("output_token_length: 2000000000 is over the cap",
                     self.store.add_outcome, "q", "m", 1, 2e9, idempotency_key="k")
        # The refused keyed append took no key.
        self.assertIs(self.store.add_outcome("q", "m", 1, 3, idempotency_key="k"), True)
        self.store.add("q", [("m", 1, 1000000000)], input_tokens=1000000000)
        self.assertEqual(len(self.store), 2)

    def test_values_that_are_no_numbers_name_their_field(self):
        # float() said only "could not convert string to float: 'yes'".
        self.refused("Store.add: outcomes[1].correctness: expected a boolean or a number in "
                     "[0,1], got str 'yes'", self.store.add, "q", [("a", 1, 3), ("b", "yes", 3)])
        self.refused("Store.add: outcomes[0].output_tokens: expected a non-negative number, "
                     "got str 'ten'",
                     self.store.add, "q", [{"model_name": "a", "correctness": 1,
                                            "output_token_length": "ten"}])
        self.refused("outcomes[0]: expected (model, correctness, output_tokens) or an "
                     "outcome dict, got tuple ('a', 1)", self.store.add, "q", [("a", 1)])
        self.refused("Store.add_outcome: correctness: expected a boolean or a number in "
                     "[0,1], got str 'x'",
                     self.store.add_outcome, "q", "a", "x", 3)
        self.refused("output_tokens: expected a non-negative number, got None",
                     self.store.add_outcome, "q", "a", 1, None, idempotency_key="k1")
        self.store.add("q", [("a", True, 3), {"model": "b", "correctness": 0.5,
                                               "output_tokens": 2}])
        self.assertEqual(len(self.store), 1)


class ImporterNumberRulesTest(unittest.TestCase):
    """A record's numbers are taken or refused by Store.add and add_outcome
    as `llmroute import` takes or refuses them (and Store.import_records,
    which is the same import), a refusal in the import's words."""

    VALUES = [("0", 0), ("1", 1), ("whole", 123), ("123.0", 123.0), ("2.5", 2.5), ("0.5", 0.5),
              ("negative", -1), ("NaN", float("nan")), ("huge", 1e300), ("huge int", 10 ** 20),
              ("True", True), ("False", False), ("string", "123")]
    # field -> (Store.add's argument, add_outcome's)
    FIELDS = {"input_token_length": "input_tokens", "output_token_length": "output_tokens",
              "correctness": "correctness"}

    @staticmethod
    def record(field, v):
        r = {"query": "what is 2+2", "input_token_length": 5,
             "outputs": [{"model_name": "a", "correctness": 1, "output_token_length": 7}]}
        if field == "input_token_length":
            r[field] = v
        else:
            r["outputs"][0][field] = v
        return r

    def command_takes(self, cli, folder, rec):
        """Whether `llmroute import --strict` imports the record (a JSON
        file of it; NaN written as json.dumps writes it, which no JSON
        reader takes)."""
        data = os.path.join(folder, "data.json")
        with open(data, "w") as f:
            json.dump([rec], f)
        store = os.path.join(folder, "h.db")
        out = subprocess.run([cli, "import", "--strict", "--store", store, data],
                             capture_output=True, text=True, timeout=60)
        for name in os.listdir(folder):
            os.unlink(os.path.join(folder, name))
        return out.returncode == 0

    def binding(self, field, v):
        """What Store.add and Store.add_outcome do with v in field: None
        when they store it, else their exceptions."""
        arg = self.FIELDS[field]
        out = []
        for how in ("add", "add_outcome"):
            s = llmroute.Store()
            kw = {"input_tokens": 5}
            outcome = {"model_name": "a", "correctness": 1, "output_token_length": 7}
            if field == "input_token_length":
                kw["input_tokens"] = v
            elif how == "add":
                outcome[field] = v
            try:
                if how == "add":
                    s.add("what is 2+2", [outcome], **kw)
                else:
                    kw.setdefault("correctness", 1)
                    kw.setdefault("output_tokens", 7)
                    if field != "input_token_length":
                        kw[arg] = v
                    s.add_outcome("what is 2+2", "a", **kw)
                out.append(None)
                self.assertEqual(len(s), 1)
            except llmroute.InvalidInput as e:
                out.append(e)
                self.assertEqual(len(s), 0)
            s.close()
        return out

    def test_store_add_takes_and_refuses_each_number_as_the_import_does(self):
        # Store.add and add_outcome took True as an output token count (1),
        # which the import refuses, and refused an input token count in
        # words of their own ("expected a whole number, got float 2.5",
        # "expected a whole number from 0 to 1000000000, got -1", a
        # 301-digit number for 1e300) where the import says "expected a
        # non-negative integer" and "1e+300 is over the cap of 1000000000".
        cli = support.cli_path()
        if cli is None:
            self.fail("the llmroute command was not found: set LLMROUTE_CLI")
        folder = tempfile.TemporaryDirectory()
        self.addCleanup(folder.cleanup)
        for field in self.FIELDS:
            for name, v in self.VALUES:
                with self.subTest(field=field, value=name):
                    rec = self.record(field, v)
                    imported = llmroute.Store()
                    try:
                        imported.import_records([rec])
                        refusal = None
                    except llmroute.ParseError as e:
                        refusal = str(e)
                    self.assertEqual(len(imported), 0 if refusal else 1)
                    self.assertEqual(self.command_takes(cli, folder.name, rec), refusal is None)
                    for got in self.binding(field, v):
                        if refusal is None:
                            self.assertIsNone(got)
                            continue
                        self.assertIsNotNone(got, refusal)
                        # "import_records: records[0]: outputs[0].correctness:
                        # expected ..., got NaN": the rule after the field.
                        rule = refusal.split(field + ": ", 1)[1].split(", got ")[0]
                        self.assertIn(": " + rule, str(got))
                        self.assertIsInstance(got, llmroute.InvalidType
                                              if isinstance(v, (bool, str))
                                              else llmroute.InvalidInput)


class ImportRecordsMessagesTest(unittest.TestCase):
    def setUp(self):
        self.store = llmroute.Store()

    def tearDown(self):
        self.store.close()

    def test_a_strict_failure_names_the_record_not_a_file(self):
        good = rec("fine", ("a", 1, 2))
        with self.assertRaises(llmroute.ParseError) as cm:
            self.store.import_records([good, good, good, rec("", ("a", 1, 2))])
        msg = str(cm.exception)
        self.assertEqual(msg, "import_records: records[3]: query: expected a non-empty string")
        self.assertNotIn("llmroute-import-", msg)
        self.assertEqual(cm.exception.line, 0)
        self.assertEqual(len(self.store), 0)

    def test_a_count_too_big_for_an_integer_names_its_record(self):
        # It was "import_records:1:69: too big integer", a place in a
        # temporary file the caller never saw.
        good = rec("fine", ("a", 1, 2))
        with self.assertRaises(llmroute.ParseError) as cm:
            self.store.import_records([good, rec("q", ("a", 1, 2), input_token_length=10 ** 30)])
        self.assertEqual(str(cm.exception), "import_records: records[1]: input_token_length: "
                                            "1e+30 is over the cap of 1000000000")
        self.assertEqual(len(self.store), 0)

    def test_the_report_names_the_first_bad_record(self):
        good = rec("fine", ("a", 1, 2))
        rep = self.store.import_records([good, rec("q", ("a", 2, 2)), good], strict=False)
        self.assertEqual((rep.imported, rep.bad), (2, 1))
        self.assertEqual(rep.first_bad,
                         "records[1]: outputs[0].correctness: expected a boolean or a number "
                         "in [0,1]")

    def assert_bad_record(self, good, bad, why):
        """bad, third of four records, fails the whole import naming
        records[2] and why, and nothing is stored; with strict=False it
        alone is skipped, and the report names it."""
        with self.assertRaises(llmroute.ParseError) as cm:
            self.store.import_records([good, good, bad, good])
        self.assertEqual(str(cm.exception), "import_records: records[2]: " + why)
        self.assertEqual(len(self.store), 0)
        store = llmroute.Store()
        rep = store.import_records([good, good, bad, good], strict=False)
        self.assertEqual((rep.read, rep.imported, rep.bad), (4, 3, 1))
        self.assertEqual(rep.first_bad, "records[2]: " + why)
        self.assertEqual(len(store), 3)
        store.close()

    def assert_add_data_names(self, good, bad, why):
        """AIOS's add_data names the bad record in data, and stores nothing."""
        qs = llmroute.QueryStore()
        with self.assertRaises(llmroute.ParseError) as cm:
            qs.add_data([good, bad])
        self.assertEqual(str(cm.exception), "QueryStore.add_data: data[1]: " + why)
        self.assertEqual(qs.count(), 0)
        qs.close()

    def test_a_nan_or_infinity_names_its_record_and_only_it_is_skipped(self):
        # Any of them failed the whole import, strict or not: "records:
        # cannot be written as JSON: Out of range float values are not JSON
        # compliant", naming no record.
        good = rec("fine", ("a", 1, 2))
        nan, inf = float("nan"), float("inf")
        cases = [(rec("q", ("a", nan, 2)), "outputs[0].correctness: expected a boolean or a "
                  "number in [0,1], got NaN"),
                 (rec("q", ("a", 1, -inf)), "outputs[0].output_token_length: expected a "
                  "non-negative number, got -Infinity"),
                 (rec("q", ("a", 1, 2), input_token_length=inf), "input_token_length: expected "
                  "a non-negative integer, got Infinity")]
        for bad, why in cases:
            with self.subTest(why=why):
                self.assert_bad_record(good, bad, why)
        # A field the import does not read may hold one: the record is kept.
        rep = self.store.import_records([rec("q", ("a", 1, 2), note=nan)])
        self.assertEqual((rep.imported, rep.bad), (1, 0))
        # AIOS's add_data names it in data.
        self.assert_add_data_names(good, *cases[0])

    def test_a_nul_character_names_its_record_and_only_it_is_skipped(self):
        # It was "import_records:1:209: a NUL character (\\u0000) is not
        # allowed near ...", a column in the JSON the records go through,
        # and strict=False refused every record with it.
        good = rec("fine", ("a", 1, 2))
        cases = [(rec("a\x00b", ("a", 1, 2)), "query: a NUL character (\\u0000) is not allowed"),
                 (rec("q", ("a\x00", 1, 2)),
                  "outputs[0].model_name: a NUL character (\\u0000) is not allowed"),
                 (rec("q", ("a", 1, 2), note=["x", "y\x00"]),
                  "note[1]: a NUL character (\\u0000) is not allowed")]
        for bad, why in cases:
            with self.subTest(why=why):
                self.assert_bad_record(good, bad, why)
        self.assert_add_data_names(good, *cases[0])

    def test_a_record_json_cannot_write_names_its_place(self):
        good = rec("fine", ("a", 1, 2))
        with self.assertRaises(llmroute.InvalidType) as cm:
            self.store.import_records([good, rec(b"q", ("a", 1, 2))])
        self.assertEqual(str(cm.exception), "Store.import_records: records[1]: cannot be "
                         "written as JSON: Object of type bytes is not JSON serializable")
        with self.assertRaises(llmroute.InvalidType) as cm:
            llmroute.QueryStore().add_data([good, good, rec(b"q", ("a", 1, 2))])
        self.assertIn("QueryStore.add_data: data[2]: cannot be written as JSON",
                      str(cm.exception))


class EmptyFileTest(support.StoreFileTestCase):
    def test_an_empty_file_is_no_database_however_it_is_opened(self):
        # Read-only, it was "'h.db' is not a history store (opened
        # read-only)", where a writable open says what is wrong with it.
        open(self.path, "wb").close()
        want = "history store '%s': file is not a database (it is empty)" % self.path
        for read_only in (False, True):
            with self.subTest(read_only=read_only):
                with self.assertRaises(llmroute.StoreError) as cm:
                    llmroute.Store(self.path, read_only=read_only)
                self.assertEqual(str(cm.exception), want)
                self.assertEqual(os.path.getsize(self.path), 0)


class EmbedderIdTest(support.StoreFileTestCase):
    def test_an_id_no_new_store_could_use_is_refused(self):
        for path in (":memory:", self.path):
            with self.assertRaises(llmroute.InvalidInput) as cm:
                llmroute.Store(path, embedder="typo")
            self.assertIn("embedder: 'typo'", str(cm.exception))
            self.assertIn("'openai:MODEL'", str(cm.exception))
        self.assertFalse(os.path.exists(self.path))
        with self.assertRaises(llmroute.InvalidInput):
            llmroute.Store(embedder="openai:")
        with self.assertRaises(TypeError):
            llmroute.Store(embedder=5)

    def test_the_ids_llmroute_uses_are_taken(self):
        for emb in (None, "tfidf-v1", "openai:all-minilm"):
            llmroute.Store(embedder=emb).close()
        llmroute.Store(self.path, embedder="openai:all-minilm", dense_dim=4).close()
        # An existing store is the library's to check: another id is a
        # StoreError naming both, the right one opens.
        with self.assertRaises(llmroute.StoreError) as cm:
            llmroute.Store(self.path, embedder="typo")
        self.assertIn("openai:all-minilm", str(cm.exception))
        llmroute.Store(self.path, embedder="openai:all-minilm").close()



class StoreSettingsTest(support.StoreFileTestCase):
    def test_path_is_refused_after_the_file_is_opened(self):
        # store.path = "b.db" used to be taken and read back while the
        # records went on into the file opened (b.db was never made).
        other = os.path.join(self.dir.name, "b.db")
        store = llmroute.Store(self.path)
        try:
            with self.assertRaises(AttributeError) as cm:
                store.path = other
            self.assertIn("Store: path: read-only", str(cm.exception))
            self.assertIn("open another Store(path", str(cm.exception))
            self.assertEqual(store.path, self.path)
            store.add("write a sorting function", [("a", 1, 3)])
        finally:
            store.close()
        self.assertFalse(os.path.exists(other))
        with llmroute.Store(self.path) as again:
            self.assertEqual(len(again), 1)

if __name__ == "__main__":
    unittest.main()
