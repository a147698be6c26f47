"""llmroute: Python binding of libllmroute, a multi-LLM router.

    from llmroute import RouterStrategy, SequentialRouting, SmartRouting

replaces AIOS's routing classes (aios/llm_core/routing.py) with the same
names and arguments. Config, Store and Router expose the library directly.
A dense store takes its vectors from an embed function (embed=), such as
openai_embedder() for an OpenAI-compatible embeddings server.

libllmroute is found through LLMROUTE_LIB (a path to libllmroute.so), else
next to this package, in the source tree's build folder, or by the system
loader; see llmroute._lib.
"""
from ._lib import VERSION as __version__
from ._lib import LibraryNotFound, LibraryVersionMismatch, library_path
from .core import (BatchResult, Candidate, Config, Decision, ImportReport, ModelInfo, Router,
                   Store, config_from_llm_configs, estimate_tokens)
from .embed import OpenAIEmbedder, openai_embedder
from .errors import (Cancelled, ConfigError, EmbedError, EmptyInput, Error, Infeasible,
                     InvalidInput, InvalidType, IOFailure, OutOfMemory, ParseError, StoreBusy,
                     StoreError, StoreReplaced, StrategyError, TooBig, UnknownModel)
from .routing import QueryStore, RouterStrategy, SequentialRouting, SmartRouting

__all__ = ["RouterStrategy", "SequentialRouting", "SmartRouting", "QueryStore", "Config",
           "Store", "Router", "Decision", "Candidate", "BatchResult", "ImportReport",
           "ModelInfo", "config_from_llm_configs", "estimate_tokens", "library_path",
           "LibraryNotFound", "LibraryVersionMismatch", "Error", "InvalidInput", "InvalidType", "UnknownModel",
           "ParseError", "ConfigError", "EmptyInput", "StrategyError", "TooBig", "Infeasible",
           "StoreError", "StoreBusy", "StoreReplaced", "Cancelled", "IOFailure", "OutOfMemory",
           "EmbedError",
           "OpenAIEmbedder", "openai_embedder"]
