"""`pip install ./bindings/python` works offline, and the wheel is complete."""
import base64
import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import unittest
import zipfile

import support

sys.path.insert(0, support.PACKAGE_ROOT)
import build_backend  # noqa: E402


class PackagingTest(unittest.TestCase):
    def test_wheel_holds_every_module_with_a_true_record(self):
        with tempfile.TemporaryDirectory() as d:
            name = build_backend.build_wheel(d)
            self.assertEqual(name, "llmroute-0.4.0-py3-none-any.whl")
            with zipfile.ZipFile(os.path.join(d, name)) as z:
                names = set(z.namelist())
                modules = {"llmroute/%s" % f
                           for f in os.listdir(os.path.join(support.PACKAGE_ROOT, "llmroute"))
                           if f.endswith(".py")}
                self.assertTrue(modules <= names, modules - names)
                record = z.read("llmroute-0.4.0.dist-info/RECORD").decode()
                for line in record.splitlines():
                    path, digest, size = line.rsplit(",", 2)
                    if not digest:
                        continue
                    data = z.read(path)
                    want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
                    self.assertEqual(digest, "sha256=" + want.decode(), path)
                    self.assertEqual(int(size), len(data), path)
                self.assertIn(b"Name: llmroute", z.read("llmroute-0.4.0.dist-info/METADATA"))

    def test_pip_installs_offline_and_the_package_routes(self):
        # pip is a build dependency (scripts/deps.sh installs python3-pip): a
        # python3 without it fails here rather than skipping the check.
        self.assertIsNotNone(importlib.util.find_spec("pip"),
                             "%s has no pip (install python3-pip)" % sys.executable)
        env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PYTHONPATH")}
        env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
                   PIP_ROOT_USER_ACTION="ignore")
        with tempfile.TemporaryDirectory() as d:
            target = os.path.join(d, "site")
            p = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index",
                                "--target", target, support.PACKAGE_ROOT],
                               env=env, capture_output=True, text=True, timeout=240)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertTrue(os.path.exists(os.path.join(target, "llmroute", "routing.py")))
            # The installed copy, run in a process of its own.
            env = dict(os.environ, PYTHONPATH=target, LLMROUTE_LIB=support._lib.library_path)
            code = ("import llmroute; r = llmroute.SequentialRouting([{'name': 'x'}, "
                    "{'name': 'y'}]); print(llmroute.__file__); "
                    "print(r.get_model_idxs([{'name': 'x'}, {'name': 'y'}], n_queries=3))")
            p = subprocess.run([sys.executable, "-c", code], env=env, cwd=d,
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            where, idxs = p.stdout.splitlines()
            self.assertTrue(where.startswith(target), where)
            self.assertEqual(idxs, "[0, 1, 0]")


if __name__ == "__main__":
    unittest.main()
