"""The API Lambda: submit, read, list and cancel jobs, and read their worker logs."""
