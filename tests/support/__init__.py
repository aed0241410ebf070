"""What the test folders and the benches share: fake AWS environments, a job factory, the
control-plane world on moto, stream records, and drivers for the API and the local stack.

Imported as `tests.support.<module>` (pytest puts the repository root on `sys.path`)."""
