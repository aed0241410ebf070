"""The reaper: the scheduled safety net for everything the stream events miss."""
