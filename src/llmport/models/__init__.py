"""What a model name stands for (ModelSpec), and the one place a name becomes one."""
