"""The ctypes structures match the C compiler's layout of llmroute.h."""
import ctypes
import json
import os
import subprocess
import unittest

import support  # noqa: F401  (puts the package on the path)
from llmroute import _lib


class LayoutTest(unittest.TestCase):
    def test_every_struct_matches_the_header(self):
        exe = os.environ.get("LLMROUTE_LAYOUT")
        if not exe:
            self.skipTest("LLMROUTE_LAYOUT is not set (ctest builds py_layout and sets it)")
        c = json.loads(subprocess.run([exe], capture_output=True, text=True, check=True,
                                      timeout=60).stdout)
        constants = c.pop("#constants")
        self.assertEqual(set(c), {s.__name__ for s in _lib.STRUCTS})
        copied = {k: v for k, v in vars(_lib).items()
                  if k.startswith("LR_") and isinstance(v, int) and not isinstance(v, bool)}
        self.assertEqual(copied, constants)
        for s in _lib.STRUCTS:
            with self.subTest(struct=s.__name__):
                want = c[s.__name__]
                self.assertEqual(ctypes.sizeof(s), want["size"])
                self.assertEqual([f[0] for f in s._fields_], list(want["fields"]))
                for name, off in want["fields"].items():
                    self.assertEqual(getattr(s, name).offset, off, name)


if __name__ == "__main__":
    unittest.main()
