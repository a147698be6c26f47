"""copy.copy(), copy.deepcopy() and pickle of the objects that own
libllmroute handles (Config, Store, Router) and of SequentialRouting are
refused with a TypeError naming the class and what to do instead.

A shallow copy shared the C handle, which both copies then freed (a crash
or a double free); a deep copy and pickle failed inside ctypes with a
ValueError about pointers, SequentialRouting's with "cannot pickle
'_thread.lock'", and copy.copy(SequentialRouting) shared its cursor. Each
class's case runs in a python3 of its own (run_apart), so that a crash
fails the test instead of the runner. SmartRouting's and QueryStore's are
in test_smart_guards.py."""
import unittest

import support  # noqa: F401  (puts the package on the path)
from test_errors import run_apart

# MAKE builds the object; USE shows that the original still works after
# the copy was refused.
CHECK = """
import copy, gc, pickle
ops = (("copy", copy.copy), ("deepcopy", copy.deepcopy),
       ("pickle", lambda o: pickle.loads(pickle.dumps(o))))
for how, f in ops:
    x = MAKE
    try:
        y = f(x)
    except TypeError as e:
        print(how, "refused:", e)
    except Exception as e:
        print(how, "failed:", type(e).__name__, e)
    else:
        print(how, "copied")
        del y
    USE
    del x
    gc.collect()
print("done")
"""


def check_refused(test, name, make, use, hint):
    """Runs CHECK for one class in a python3 of its own and checks that
    each of the three ways of copying was refused naming the class and
    saying `hint`."""
    p = run_apart(CHECK.replace("MAKE", make).replace("USE", use))
    test.assertEqual(p.returncode, 0, "exit %d: %s%s" % (p.returncode, p.stdout, p.stderr))
    lines = p.stdout.splitlines()
    test.assertEqual(len(lines), 4, p.stdout)
    for line, how in zip(lines, ("copy", "deepcopy", "pickle")):
        test.assertTrue(line.startswith("%s refused: cannot %s a %s object: " % (how, how, name)),
                        line)
        test.assertIn("cannot be duplicated", line)
        test.assertIn(hint, line)
    test.assertEqual(lines[3], "done")


class CopyIsRefusedTest(unittest.TestCase):
    def test_config(self):
        check_refused(self, "Config", "Config({'models': M})", "assert x.index('b') == 1",
                      "share this one")

    def test_store(self):
        check_refused(self, "Store", "Store(':memory:')", "assert len(x) == 0",
                      "open another Store on the same file")

    def test_router(self):
        check_refused(self, "Router", "Router(Config({'models': M}), strategy='sequential')",
                      "assert [x.route_index(('a', 'b')) for _ in range(2)] == [0, 1]",
                      "build another Router from the same Config")

    def test_sequential_routing(self):
        # A copy shared the instance's cursor; "one cursor per instance".
        check_refused(self, "SequentialRouting", "SequentialRouting(M)",
                      "assert x.get_model_idxs(M, 2) == [0, 1]",
                      "build a new SequentialRouting(llm_configs) for a round-robin cursor of "
                      "its own")


if __name__ == "__main__":
    unittest.main()
