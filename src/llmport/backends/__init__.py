"""The compute under the engine: llama.cpp through its low-level C API."""
