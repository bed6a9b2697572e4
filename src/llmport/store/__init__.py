"""Where models live: references, the embedded default model and GGUF file checks."""
