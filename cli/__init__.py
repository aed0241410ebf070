"""`seren-remote`: the client of the remote replication service, and `local up`."""
