"""HTTP: the OpenAI (and later Ollama) protocols onto the model manager."""
