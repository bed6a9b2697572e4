"""llmport's continuous-batching engine: schedule, execute, update over a backend."""
