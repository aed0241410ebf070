"""The replication worker: runs one job on its EC2 instance, keeps the job's item true
(status, heartbeat, progress, outcome), and terminates the instance when it is done."""
