"""TLS between the SDK and the server, with a certificate made for the test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sensorium_client import Client, UnavailableError
from sensorium_server.settings import Settings
from tests.serving import ServerThread, local_settings

Trial = tuple[np.ndarray, np.ndarray, np.ndarray]


def test_tls_client_predicts_and_plaintext_is_refused(
    repository: Path, certificate: tuple[Path, Path], sample: Trial
) -> None:
    cert, key = certificate
    settings = local_settings(
        repository,
        versions="specific:1",
        tls_cert=str(cert),
        tls_key=str(key),
    )
    running = ServerThread(settings).start()
    try:
        video, behavior, pupil = (a[:5] for a in sample)
        with Client(
            running.target, tls=True, root_certificates=cert.read_bytes(), token="secret-token"
        ) as client:
            assert client.predict(video, behavior, pupil, model="tiny").shape == (5, 40)
        with Client(running.target, retries=0, timeout=3) as plain, pytest.raises(UnavailableError):
            plain.models()
    finally:
        running.stop()


def test_tls_settings_come_in_pairs() -> None:
    with pytest.raises(ValueError, match="tls_cert and tls_key go together"):
        Settings(tls_cert="cert.pem")
