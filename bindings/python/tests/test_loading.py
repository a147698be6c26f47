"""Finding libllmroute, and saying what was tried when it cannot be found."""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import support
from llmroute import _lib


def run_import(env, package_dir):
    code = "import llmroute; print(llmroute.library_path)"
    return subprocess.run([sys.executable, "-c", code], cwd=package_dir, env=env,
                          capture_output=True, text=True, timeout=60)


class LoadingTest(unittest.TestCase):
    def test_loaded_library_is_the_one_named_by_llmroute_lib(self):
        want = os.environ.get("LLMROUTE_LIB")
        if not want:
            self.skipTest("LLMROUTE_LIB is not set (ctest sets it)")
        self.assertEqual(_lib.library_path, want)

    def test_bad_llmroute_lib_says_what_to_set(self):
        env = dict(os.environ, LLMROUTE_LIB="/nonexistent/libllmroute.so")
        p = run_import(env, support.PACKAGE_ROOT)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("LLMROUTE_LIB=/nonexistent/libllmroute.so", p.stderr)
        self.assertIn("LibraryNotFound", p.stderr)
        self.assertIn("Set LLMROUTE_LIB", p.stderr)

    def test_not_found_lists_every_place_tried(self):
        with tempfile.TemporaryDirectory() as d:
            # A copy of the package outside the source tree, so no build
            # folder lies next to it.
            shutil.copytree(os.path.join(support.PACKAGE_ROOT, "llmroute"),
                            os.path.join(d, "llmroute"),
                            ignore=shutil.ignore_patterns("__pycache__", "*.so*"))
            env = {k: v for k, v in os.environ.items()
                   if k not in ("LLMROUTE_LIB", "LD_LIBRARY_PATH", "PYTHONPATH")}
            p = run_import(env, d)
            if p.returncode == 0:
                self.skipTest("a system-wide libllmroute is installed (%s)" % p.stdout.strip())
            self.assertIn("cannot find libllmroute. Tried:", p.stderr)
            self.assertIn(os.path.join(d, "llmroute", "libllmroute.so"), p.stderr)
            self.assertIn("system loader", p.stderr)
            self.assertIn("export LLMROUTE_LIB=", p.stderr)

    def test_library_version_is_the_bindings(self):
        import llmroute
        self.assertEqual(_lib.api.lr_version().decode(), _lib.VERSION)
        self.assertEqual(llmroute.__version__, _lib.VERSION)
        self.assertEqual(_lib.api.lr_version_number(),
                         sum(int(p) * m for p, m in zip(_lib.VERSION.split("."),
                                                         (10000, 100, 1))))
        # The package metadata says the same version.
        with open(os.path.join(support.PACKAGE_ROOT, "pyproject.toml")) as f:
            self.assertIn('version = "%s"' % _lib.VERSION, f.read())
        # And the header the library was built from.
        root = os.path.dirname(os.path.dirname(support.PACKAGE_ROOT))
        with open(os.path.join(root, "include", "llmroute.h")) as f:
            self.assertIn('#define LR_VERSION_STRING "%s"' % _lib.VERSION, f.read())

    def test_another_library_version_is_an_import_error_naming_both(self):
        with self.assertRaises(ImportError) as cm:
            _lib.check_version("9.8.7", "/x/libllmroute.so")
        self.assertIsInstance(cm.exception, _lib.LibraryVersionMismatch)
        msg = str(cm.exception)
        self.assertIn("libllmroute 9.8.7 at /x/libllmroute.so", msg)
        self.assertIn("binding %s" % _lib.VERSION, msg)
        self.assertIn("LLMROUTE_LIB", msg)
        _lib.check_version(_lib.VERSION, "/x/libllmroute.so")  # the same: no error

    def test_a_library_without_a_version_is_refused_at_import(self):
        # Any shared library that exports no lr_version stands in for an
        # older libllmroute: the C library's math library is at hand.
        import ctypes.util
        libm = ctypes.util.find_library("m")
        if not libm:
            self.skipTest("no libm to stand in for an old library")
        env = dict(os.environ, LLMROUTE_LIB=libm)
        p = run_import(env, support.PACKAGE_ROOT)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("LibraryVersionMismatch", p.stderr)
        self.assertIn("does not report its version", p.stderr)

    def test_build_tree_is_found_without_llmroute_lib(self):
        root = os.path.dirname(os.path.dirname(support.PACKAGE_ROOT))
        built = os.path.join(root, "build", "libllmroute.so")
        if not os.path.exists(built):
            self.skipTest("no %s to find" % built)
        if os.environ.get("LD_PRELOAD"):
            self.skipTest("sanitizer run: the normal build's library is not the one under test")
        env = {k: v for k, v in os.environ.items() if k != "LLMROUTE_LIB"}
        p = run_import(env, support.PACKAGE_ROOT)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.strip(), built)


if __name__ == "__main__":
    unittest.main()
