"""The ``blocknerf`` command line: argument parsing lives here and nowhere else."""
