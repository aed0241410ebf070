"""The Lambda functions of the service: api, launcher and reaper."""
