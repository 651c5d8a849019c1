"""Training one block: its data, its optimisation loop, its checkpoints."""
