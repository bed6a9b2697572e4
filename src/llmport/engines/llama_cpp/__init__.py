"""llama.cpp: the batching engine's backend over its C API, its memory plan and its kind."""
