"""The control plane: admission (which job gets a worker slot), launch (one instance per
job attempt) and settling (a job gives back what its status no longer lets it hold).

The launcher and the reaper Lambdas are thin adapters over it. It reaches AWS only
through the ports in `control_plane.ports`, so its decisions run against in-memory fakes
in tests as well as against DynamoDB and EC2.
"""
