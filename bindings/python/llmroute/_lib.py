"""Finding libllmroute and declaring its C API for ctypes.

The structures below mirror include/llmroute.h field for field, in order;
tests/test_layout.py compares their sizes and offsets with the C compiler's.

The library is loaded with ctypes.CDLL, not PyDLL: a CDLL foreign call
releases the GIL for its duration, so Python threads route in parallel and a
long batch does not stall the interpreter. libllmroute's router is safe to
call from several threads at once (see the header's threading rules).

Where the library is looked for, in order:
  1. the file named by the LLMROUTE_LIB environment variable (and nothing
     else when it is set);
  2. a file next to this package (llmroute/libllmroute.so), for a copy
     installed with the package;
  3. the source tree's build folder (`make build`), when the package is used
     from a checkout: bindings/python/llmroute -> ../../../build/libllmroute.so.
     Only the normal build: a sanitizer build (build-asan) cannot be loaded
     into a python3 that does not preload the ASan runtime;
  4. the system loader (ctypes.util.find_library("llmroute"), then the
     plain soname), which searches the standard paths and LD_LIBRARY_PATH.
"""
import ctypes
import ctypes.util
import os
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char, c_char_p, c_double, c_float, c_int,
                    c_long, c_longlong, c_size_t, c_uint64, c_void_p)

__all__ = ["lib", "library_path", "LibraryNotFound", "LibraryVersionMismatch", "VERSION"]

# The binding's version, which must be the loaded library's (llmroute.h's
# LR_VERSION_STRING, as lr_version() reports it): the structures below
# mirror that header's, and another version's may differ in layout.
VERSION = "0.4.0"


class LibraryNotFound(ImportError):
    """libllmroute could not be loaded; the message lists every place tried."""


class LibraryVersionMismatch(ImportError):
    """The libllmroute found is not the version this binding mirrors."""


def _candidates():
    """(description, path-or-name) pairs in the order they are tried."""
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(os.path.dirname(here)))
    out = [("next to the package", os.path.join(here, "libllmroute.so"))]
    if os.path.exists(os.path.join(root, "include", "llmroute.h")):
        out.append(("source tree build", os.path.join(root, "build", "libllmroute.so")))
    found = ctypes.util.find_library("llmroute")
    if found:
        out.append(("system loader (find_library)", found))
    out.append(("system loader", "libllmroute.so.0"))
    out.append(("system loader", "libllmroute.so"))
    return out


def _load():
    env = os.environ.get("LLMROUTE_LIB")
    if env:
        try:
            return ctypes.CDLL(env), env
        except OSError as e:
            raise LibraryNotFound(
                "llmroute: cannot load libllmroute from LLMROUTE_LIB=%s: %s\n"
                "Set LLMROUTE_LIB to the path of a libllmroute.so built without sanitizers "
                "(for example build/libllmroute.so after `make build`), or unset it to search "
                "the default places." % (env, e)) from None
    tried = []
    for what, path in _candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append("  %s: %s (no such file)" % (what, path))
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            tried.append("  %s: %s (%s)" % (what, path, e))
    raise LibraryNotFound(
        "llmroute: cannot find libllmroute. Tried:\n%s\n"
        "Build it (`make build` in the llmroute source tree gives build/libllmroute.so) and set "
        "LLMROUTE_LIB to its path, e.g. export LLMROUTE_LIB=/path/to/llmroute/build/"
        "libllmroute.so" % "\n".join(tried))


lib, library_path = _load()

# ==== Constants (enum lr_errcode, enum lr_batch_mode) ====

LR_OK = 0
LR_EINVAL = -1
LR_ENOMEM = -2
LR_ENOMODEL = -3
LR_EIO = -4
LR_EPARSE = -5
LR_ECONFIG = -6
LR_EEMPTY = -7
LR_ESTORE = -8
LR_EINFEASIBLE = -9
LR_ESTRATEGY = -10
LR_ETOOBIG = -11
LR_EBUSY = -12
LR_EREPLACED = -13
LR_ECANCELED = -14

# enum lr_record_number: a record's numbers, each with the importer's rule.
LR_CORRECTNESS = 0
LR_INPUT_TOKENS = 1
LR_OUTPUT_TOKENS = 2

LR_BATCH_PER_QUERY = 0
LR_BATCH_QUALITY = 1
LR_BATCH_BUDGET = 2

LR_STORE_KEY_TTL_DEFAULT = 86400
LR_STORE_KEY_SAME = 1
LR_STORE_KEY_DIFFERS = 2
LR_STORE_MAX_KEY_TTL = 3153600000
LR_MAX_N_SIMILAR = 1024
LR_BATCH_MAX_BUDGET = 10 ** 12  # 1e12 in the header, a double

# ==== Structures, as in include/llmroute.h ====


class lr_error(Structure):
    _fields_ = [("code", c_int), ("line", c_int), ("message", c_char * 512)]


class lr_model_info(Structure):
    _fields_ = [("name", c_char_p), ("backend", c_char_p), ("base_url", c_char_p),
                ("api_key_env", c_char_p), ("upstream_model", c_char_p),
                ("cost_per_input_token", c_double), ("cost_per_output_token", c_double),
                ("max_concurrency", c_int), ("capacity", c_int), ("json", c_char_p)]


class lr_route_info(Structure):
    _fields_ = [("name", c_char_p), ("strategy", c_char_p), ("models", POINTER(c_int)),
                ("n_models", c_size_t), ("performance_requirement", c_double),
                ("fallbacks", POINTER(c_int)), ("n_fallbacks", c_size_t), ("json", c_char_p)]


class lr_router_defaults(Structure):
    _fields_ = [("strategy", c_char_p), ("performance_requirement", c_double),
                ("n_similar", c_int), ("predictor", c_char_p), ("alpha", c_double),
                ("embedding_json", c_char_p), ("store_path", c_char_p),
                ("query_text", c_char_p)]


class lr_outcome(Structure):
    _fields_ = [("model", c_char_p), ("correctness", c_double), ("output_tokens", c_double)]


class lr_record(Structure):
    _fields_ = [("query", c_char_p), ("input_tokens", c_long), ("task", c_char_p),
                ("outcomes", POINTER(lr_outcome)), ("n_outcomes", c_size_t)]


class lr_store_options(Structure):
    _fields_ = [("embedder", c_char_p), ("dense_dim", c_int), ("read_only", c_int),
                ("max_records", c_size_t), ("threads", c_int), ("defer_reweigh", c_int)]


class lr_embedding_info(Structure):
    _fields_ = [("base_url", c_char_p), ("model", c_char_p), ("api_key_env", c_char_p),
                ("dimensions", c_int), ("batch_size", c_int), ("timeout_ms", c_long),
                ("embedder_id", c_char_p), ("max_input_chars", c_int)]


# int (*lr_embed_fn)(void *arg, const char *const *texts, size_t n, float *out,
#                    size_t dim, struct lr_error *err)
lr_embed_fn = CFUNCTYPE(c_int, c_void_p, POINTER(c_char_p), c_size_t, POINTER(c_float),
                        c_size_t, POINTER(lr_error))


class lr_import_options(Structure):
    _fields_ = [("split", c_char_p), ("strict", c_int), ("embed", lr_embed_fn),
                ("embed_arg", c_void_p), ("embed_batch", c_size_t), ("embed_dim", c_size_t),
                ("name", c_char_p), ("cancel", c_void_p)]


class lr_import_report(Structure):
    _fields_ = [("read", c_size_t), ("imported", c_size_t), ("skipped_split", c_size_t),
                ("skipped_unsplit", c_size_t), ("bad", c_size_t), ("first_bad", c_char * 512)]


class lr_router_options(Structure):
    _fields_ = [("strategy", c_char_p), ("store", c_void_p),
                ("performance_requirement", c_double), ("n_similar", c_int),
                ("predictor", c_char_p)]


class lr_request(Structure):
    _fields_ = [("models", POINTER(c_char_p)), ("model_indices", POINTER(c_int)),
                ("n_models", c_size_t), ("query", c_char_p), ("input_tokens", c_long),
                ("embedding", POINTER(c_float)), ("embedding_dim", c_size_t),
                ("performance_requirement", c_double)]


class lr_candidate(Structure):
    _fields_ = [("index", c_int), ("predicted_quality", c_double),
                ("predicted_output_tokens", c_double), ("estimated_cost", c_double)]


class lr_decision(Structure):
    _fields_ = [("index", c_int), ("predicted_quality", c_double),
                ("predicted_output_tokens", c_double), ("estimated_cost", c_double),
                ("input_tokens", c_long), ("ranking", POINTER(lr_candidate)),
                ("ranking_cap", c_size_t), ("n_ranked", c_size_t)]


class lr_batch_options(Structure):
    _fields_ = [("mode", c_int), ("alpha", c_double), ("budget", c_double),
                ("capacities", POINTER(c_int))]


class lr_batch_report(Structure):
    _fields_ = [("feasible", c_int), ("mean_quality", c_double), ("total_cost", c_double),
                ("iterations", c_int), ("message", c_char * 256)]


STRUCTS = [lr_error, lr_model_info, lr_route_info, lr_router_defaults, lr_embedding_info,
           lr_outcome, lr_record,
           lr_store_options, lr_import_options, lr_import_report, lr_router_options,
           lr_request, lr_candidate, lr_decision, lr_batch_options, lr_batch_report]

# ==== Functions ====

_P = POINTER
_cfg = c_void_p      # struct lr_config *
_store = c_void_p    # struct lr_store *
_router = c_void_p   # struct lr_router *
_dataset = c_void_p  # struct lr_dataset *

_PROTOTYPES = {
    "lr_strerror": (c_char_p, [c_int]),
    "lr_config_load_file": (c_int, [c_char_p, _P(_cfg), _P(lr_error)]),
    "lr_config_load_string": (c_int, [c_char_p, c_size_t, _P(_cfg), _P(lr_error)]),
    "lr_config_free": (None, [_cfg]),
    "lr_config_model_count": (c_size_t, [_cfg]),
    "lr_config_model": (_P(lr_model_info), [_cfg, c_size_t]),
    "lr_config_model_index": (c_int, [_cfg, c_char_p]),
    "lr_config_route_count": (c_size_t, [_cfg]),
    "lr_config_route": (_P(lr_route_info), [_cfg, c_size_t]),
    "lr_config_route_index": (c_int, [_cfg, c_char_p]),
    "lr_config_router_defaults": (_P(lr_router_defaults), [_cfg]),
    "lr_config_embedding": (_P(lr_embedding_info), [_cfg]),
    "lr_config_section": (c_char_p, [_cfg, c_char_p]),
    "lr_config_warning_count": (c_size_t, [_cfg]),
    "lr_config_warning": (c_char_p, [_cfg, c_size_t]),
    "lr_store_open": (c_int, [c_char_p, _P(lr_store_options), _P(_store), _P(lr_error)]),
    "lr_store_free": (None, [_store]),
    "lr_store_count": (c_size_t, [_store]),
    "lr_store_embedder": (c_char_p, [_store]),
    "lr_store_dim": (c_size_t, [_store]),
    "lr_store_refresh": (c_int, [_store, _P(c_int), _P(lr_error)]),
    "lr_store_rebuild": (c_int, [_store, _P(c_int), _P(lr_error)]),
    "lr_store_added_since_build": (c_size_t, [_store]),
    "lr_store_add": (c_int, [_store, _P(lr_record), _P(c_float), c_size_t, _P(lr_error)]),
    "lr_store_add_outcome": (c_int, [_store, c_char_p, c_long, c_char_p, c_double, c_double,
                                     _P(lr_error)]),
    "lr_store_add_outcome_vec": (c_int, [_store, c_char_p, c_long, c_char_p, c_double,
                                         c_double, _P(c_float), c_size_t, _P(lr_error)]),
    "lr_store_set_key_ttl": (c_int, [_store, c_longlong, _P(lr_error)]),
    "lr_store_key_ttl": (c_longlong, [_store]),
    "lr_store_add_outcome_keyed": (c_int, [_store, c_char_p, c_char_p, c_long, c_char_p,
                                           c_double, c_double, _P(c_float), c_size_t, _P(c_int),
                                           _P(lr_error)]),
    "lr_record_check_number": (c_int, [c_int, c_double, c_char_p, _P(lr_error)]),
    "lr_dataset_load": (c_int, [c_char_p, _P(lr_import_options), _P(_dataset),
                                _P(lr_import_report), _P(lr_error)]),
    "lr_dataset_free": (None, [_dataset]),
    "lr_dataset_count": (c_size_t, [_dataset]),
    "lr_dataset_record": (_P(lr_record), [_dataset, c_size_t]),
    "lr_store_import_file": (c_int, [_store, c_char_p, _P(lr_import_options),
                                     _P(lr_import_report), _P(lr_error)]),
    "lr_router_options_init": (None, [_P(lr_router_options)]),
    "lr_router_new": (c_int, [_cfg, _P(lr_router_options), _P(_router), _P(lr_error)]),
    "lr_router_free": (None, [_router]),
    "lr_router_strategy": (c_char_p, [_router]),
    "lr_router_sequential_cursor": (c_int, [_router, _P(c_uint64), _P(lr_error)]),
    "lr_router_set_sequential_cursor": (c_int, [_router, c_uint64, _P(lr_error)]),
    "lr_request_init": (None, [_P(lr_request)]),
    "lr_router_route": (c_int, [_router, _P(lr_request), _P(lr_decision), _P(lr_error)]),
    "lr_batch_options_init": (None, [_P(lr_batch_options)]),
    "lr_router_route_batch": (c_int, [_router, _P(lr_request), c_size_t, _P(lr_batch_options),
                                      _P(lr_decision), _P(lr_batch_report), _P(lr_error)]),
    "lr_estimate_tokens": (c_long, [c_char_p, c_size_t]),
    "lr_version": (c_char_p, []),
    "lr_version_number": (c_int, []),
}


class _Missing:
    """Stands in for a function the loaded library does not export (a build
    that predates it); calling it raises with the library's path."""

    def __init__(self, name):
        self.name = name

    def __call__(self, *args):
        raise NotImplementedError(
            "llmroute: %s is declared in llmroute.h but %s does not export it; this build of "
            "libllmroute predates it" % (self.name, library_path))


class _API:
    pass


api = _API()
missing = []
for _name, (_res, _args) in _PROTOTYPES.items():
    try:
        _fn = getattr(lib, _name)
    except AttributeError:
        missing.append(_name)
        setattr(api, _name, _Missing(_name))
        continue
    _fn.restype = _res
    _fn.argtypes = _args
    setattr(api, _name, _fn)


def has(name):
    """True when the loaded library exports the C function `name`."""
    return name not in missing


def check_version(found, path):
    """Raise LibraryVersionMismatch unless `found` (the loaded library's
    lr_version(), or None when it exports none) is VERSION."""
    if found == VERSION:
        return
    what = ("libllmroute %s" % found if found is not None
            else "a libllmroute that does not report its version (lr_version(): older than %s)"
            % VERSION)
    raise LibraryVersionMismatch(
        "llmroute: the Python binding %s cannot use %s at %s: its structures mirror llmroute.h "
        "of version %s. Build libllmroute %s (`make build` in the same llmroute source tree) and "
        "set LLMROUTE_LIB to it, or install the binding that matches the library."
        % (VERSION, what, path, VERSION, VERSION))


check_version(api.lr_version().decode() if has("lr_version") else None, library_path)
