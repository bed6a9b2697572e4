"""The server's model scheduler: which models are loaded, for whom, and for how long."""
