"""Model workers as Ray actors on the nodes of a Ray cluster (the ``ray`` extra)."""
