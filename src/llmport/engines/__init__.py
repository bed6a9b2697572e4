"""Engine implementations, one folder per kind, behind the protocol in `llmport.engine`."""
