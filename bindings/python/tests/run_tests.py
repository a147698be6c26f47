#!/usr/bin/env python3
"""Runs the Python binding's tests for ctest.

    run_tests.py core    everything but smart routing
    run_tests.py smart   test_smart_*.py; fails, saying why, when the
                         library has no smart strategy (smart routing is
                         part of libllmroute: its absence is a regression,
                         not a reason to skip)

Any skipped test is listed with its reason at the end, so none is skipped
unseen. `python3 -m unittest discover -s bindings/python/tests -v` runs
them all directly.
"""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def flatten(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from flatten(t)
        else:
            yield t


def main():
    group = sys.argv[1] if len(sys.argv) > 1 else "core"
    if group not in ("core", "smart"):
        print("usage: run_tests.py core|smart", file=sys.stderr)
        return 2
    import support  # imports llmroute: fails here, loudly, when the library is not found

    print("libllmroute: %s" % support.llmroute.library_path)
    print("python: %s %s" % (sys.executable, sys.version.split()[0]))
    loader = unittest.TestLoader()
    if group == "smart":
        why = support.smart_missing()
        if why:
            print("FAIL: smart routing is missing: %s" % why)
            return 1
        suite = loader.discover(HERE, pattern="test_smart_*.py", top_level_dir=HERE)
    else:
        suite = unittest.TestSuite(
            t for t in flatten(loader.discover(HERE, pattern="test_*.py", top_level_dir=HERE))
            if not t.id().startswith("test_smart_"))
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    if result.skipped:
        print("\nSkipped:")
        for test, reason in result.skipped:
            print("  %s: %s" % (test.id(), reason))
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
