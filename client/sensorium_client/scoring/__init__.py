"""Offline scoring of both Sensorium 2023 tracks through a running server."""
