"""Where engines run: a local worker process today; every runtime hands back an EngineClient."""
