"""The ``llmport`` command line."""
