"""The Ollama protocol (/api/*), a thin translation onto the same manager and engine."""
