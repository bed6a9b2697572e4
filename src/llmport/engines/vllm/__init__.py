"""The vLLM engine: Hugging Face models served by vLLM behind the engine protocol."""
