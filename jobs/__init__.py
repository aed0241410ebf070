"""The job: its spec, its statuses, its record and the stores that keep it.

`spec`, `states`, `record`, `policy`, `urls` and `redact` are plain Python (no AWS);
`store`, `slots`, `crypto` and `aws` talk to AWS through boto3.
"""
