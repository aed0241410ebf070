"""The launcher: reacts to the jobs table's stream, admits jobs to worker slots, starts workers."""
