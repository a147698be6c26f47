"""The Python binding over an installed libllmroute (install.staged,
tests/install/test_install.sh): LLMROUTE_LIB names the library in the
staging folder, and this checks that it is the one loaded, then routes
through it."""
import os
import sys

import llmroute

want = os.environ["LLMROUTE_LIB"]
if llmroute.library_path != want:
    sys.exit("consumer.py: loaded %s, not LLMROUTE_LIB=%s" % (llmroute.library_path, want))
real = os.path.realpath(want)
with open("/proc/self/maps") as maps:
    mapped = {line.split()[-1] for line in maps if len(line.split()) >= 6}
if real not in mapped:
    sys.exit("consumer.py: %s is not mapped into the process" % real)
others = sorted(p for p in mapped if "libllmroute" in p and p != real)
if others:
    sys.exit("consumer.py: another libllmroute is mapped too: %s" % others)

llm_configs = [
    {"name": "a", "backend": "mock", "cost_per_input_token": 1e-6, "cost_per_output_token": 2e-6},
    {"name": "b", "backend": "mock", "cost_per_input_token": 1e-7, "cost_per_output_token": 2e-7},
]
seq = llmroute.SequentialRouting(llm_configs)
got = seq.get_model_idxs([{"name": "a"}, {"name": "b"}], n_queries=3)
if got != [0, 1, 0]:
    sys.exit("consumer.py: sequential routing gave %r, not [0, 1, 0]" % (got,))
try:
    seq.get_model_idxs([{"name": "gpt-5"}], n_queries=1)
    sys.exit("consumer.py: an unknown model was accepted")
except llmroute.UnknownModel as e:
    if "gpt-5" not in str(e):
        sys.exit("consumer.py: the unknown model's message does not name it: %s" % e)
print("consumer.py: ok")
