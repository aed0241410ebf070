"""The local stand-in for the cloud: throwaway servers and helpers for tests, demo and bench."""
