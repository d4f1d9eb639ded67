"""Security settings built without a broker: the TLS context, secret files, the token file."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
import trustme

from sidecar.config import Config
from sidecar.security import SecurityFileError, TokenFile, client_security, read_secret


def test_token_file_is_re_read_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    token = TokenFile(path)
    assert token.read() == "first"
    path.write_text("second-and-longer\n")
    assert token.read() == "second-and-longer"
    # A rotation by rename (how kubelet updates a projected token) is seen too.
    new = tmp_path / "token.new"
    new.write_text("third\n")
    os.replace(new, path)
    assert token.read() == "third"
    path.unlink()
    with pytest.raises(SecurityFileError, match="--sasl-oauth-token-file"):
        token.read()


def test_secret_files_give_their_first_line_and_never_echo(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("s3cret\n")
    assert read_secret("sasl_password_file", path) == "s3cret"
    path.write_text("\n")
    with pytest.raises(SecurityFileError, match="is empty"):
        read_secret("sasl_password_file", path)


def test_tls_context_verifies_and_presents_the_client_certificate(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    leaf = ca.issue_cert("client", key_type=trustme.KeyType.RSA)
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "c.pem"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "c.key"))
    settings = Config(
        security_protocol="SSL",
        ssl_ca_file=tmp_path / "ca.pem",
        ssl_cert_file=tmp_path / "c.pem",
        ssl_key_file=tmp_path / "c.key",
        ssl_check_hostname=False,
    )
    sec = client_security(settings)
    assert sec.ssl_context is not None
    assert sec.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert sec.ssl_context.check_hostname is False
    other = trustme.CA().issue_cert("x", key_type=trustme.KeyType.RSA)
    other.private_key_pem.write_to_path(str(tmp_path / "other.key"))
    with pytest.raises(SecurityFileError, match="does not belong to the certificate"):
        client_security(settings.model_copy(update={"ssl_key_file": tmp_path / "other.key"}))


def test_the_password_is_not_in_any_repr() -> None:
    settings = Config(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="u",
        sasl_password="hunter2",  # type: ignore[arg-type]
    )
    assert "hunter2" not in repr(settings) + str(settings)
    sec = client_security(settings)
    assert sec.sasl_password == "hunter2"
    assert "hunter2" not in repr(sec)
