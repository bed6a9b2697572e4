"""The OpenAI protocol: /v1/completions, /v1/chat/completions, /v1/models, tokenize."""
