#!/usr/bin/env python3
"""Runs the Python binding's tests for ctest.

    run_tests.py core    everything but smart routing and numpy
    run_tests.py smart   test_smart_*.py; fails, saying why, when the
                         library has no smart strategy (smart routing is
                         part of libllmroute: its absence is a regression,
                         not a reason to skip)
    run_tests.py numpy   test_numpy_*.py, with this interpreter if it has
                         numpy, else with /usr/bin/python3 if that has it
                         (Debian's python3-numpy, which scripts/deps.sh
                         installs); fails, saying why, when neither has

Any skipped test is listed with its reason at the end, so none is skipped
unseen. `python3 -m unittest discover -s bindings/python/tests -v` runs
them all directly (with a python3 that has numpy).
"""
import os
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def has_numpy(python):
    """Whether the interpreter at `python` can import numpy."""
    try:
        return subprocess.call([python, "-c", "import numpy"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL) == 0
    except OSError:
        return False


def main():
    group = sys.argv[1] if len(sys.argv) > 1 else "core"
    if group not in ("core", "smart", "numpy"):
        print("usage: run_tests.py core|smart|numpy", file=sys.stderr)
        return 2
    if group == "numpy" and not has_numpy(sys.executable):
        debian = "/usr/bin/python3"
        if os.path.realpath(sys.executable) != os.path.realpath(debian) and has_numpy(debian):
            return subprocess.call([debian, os.path.abspath(__file__), "numpy"])
        print("FAIL: neither %s nor %s can import numpy (scripts/deps.sh installs "
              "python3-numpy)" % (sys.executable, debian))
        return 1
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
    elif group == "numpy":
        import numpy
        print("numpy: %s" % numpy.__version__)
        suite = loader.discover(HERE, pattern="test_numpy_*.py", top_level_dir=HERE)
    else:
        names = sorted(f[:-3] for f in os.listdir(HERE)
                       if f.startswith("test_") and f.endswith(".py")
                       and not f.startswith(("test_smart_", "test_numpy_")))
        suite = loader.loadTestsFromNames(names)
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    if result.skipped:
        print("\nSkipped:")
        for test, reason in result.skipped:
            print("  %s: %s" % (test.id(), reason))
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
