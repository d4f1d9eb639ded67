"""One local KRaft broker that a secured cluster's clients can meet in every way, on one
JVM (cheap on a shared 2-core machine): a listener per security setup, and certificates
from a CA made here (trustme). Topics are made through its PLAINTEXT listener; it never
auto-creates one, as managed clusters do not.

| listener   | protocol        | what it checks                                   |
| ---------- | --------------- | ------------------------------------------------ |
| PLAINTEXT  | PLAINTEXT       | nothing (admin, topic creation)                  |
| SSL        | SSL             | server certificate from `ca`                     |
| MTLS       | SSL             | and a client certificate from `ca` (required)    |
| EXPIRED    | SSL             | serves a certificate that has expired            |
| WRONGHOST  | SSL             | serves a certificate for another host name       |
| SCRAM      | SASL_SSL        | SCRAM-SHA-512, user `agent` (added at format)    |
| PLAIN      | SASL_PLAINTEXT  | PLAIN, user `agent`                              |
| OAUTH      | SASL_PLAINTEXT  | OAUTHBEARER, Kafka's unsecured JWT validator     |
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization

from testbed.base import BrokerError, free_ports
from testbed.kraft import KRaftCluster, Node

USER = "agent"
PASSWORD = "agent-secret-pw"
HOST = "localhost"  # what the certificates name and the listeners advertise
LISTENERS = ("PLAINTEXT", "SSL", "MTLS", "EXPIRED", "WRONGHOST", "SCRAM", "PLAIN", "OAUTH")
_PROTOCOL = {
    "PLAINTEXT": "PLAINTEXT",
    "SSL": "SSL",
    "MTLS": "SSL",
    "EXPIRED": "SSL",
    "WRONGHOST": "SSL",
    "SCRAM": "SASL_SSL",
    "PLAIN": "SASL_PLAINTEXT",
    "OAUTH": "SASL_PLAINTEXT",
    "CONTROLLER": "PLAINTEXT",
}


def unsecured_jwt(subject: str = USER, lifetime: float = 3600.0) -> str:
    """A token Kafka's unsecured validator accepts: alg none, sub, iat and exp."""

    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    now = int(time.time())
    claims = {"sub": subject, "iat": now, "exp": now + int(lifetime)}
    return f"{part({'alg': 'none'})}.{part(claims)}."


class SecureNode(Node):
    """A node whose server.properties has every listener of the table above."""

    def __init__(self, root: Path, ports: dict[str, int], certs: Path) -> None:
        super().__init__(1, root, ports["PLAINTEXT"], ports["CONTROLLER"])
        self.ports = ports
        self.certs = certs

    @property
    def address(self) -> str:  # the PLAINTEXT listener: what probes and topic creation use
        return f"127.0.0.1:{self.broker_port}"

    def configure(self, voters: str, replicas: int) -> None:
        super().configure(voters, replicas)
        c = self.certs
        listeners = [f"{n}://{HOST}:{self.ports[n]}" for n in LISTENERS]
        props: dict[str, object] = {
            "listeners": ",".join([*listeners, f"CONTROLLER://127.0.0.1:{self.controller_port}"]),
            "advertised.listeners": ",".join(listeners),
            "listener.security.protocol.map": ",".join(f"{k}:{v}" for k, v in _PROTOCOL.items()),
            "auto.create.topics.enable": "false",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": c / "server.pem",
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": c / "ca.pem",
            "ssl.client.auth": "none",
            "listener.name.mtls.ssl.client.auth": "required",
            "listener.name.expired.ssl.keystore.location": c / "expired.pem",
            "listener.name.wronghost.ssl.keystore.location": c / "wronghost.pem",
            "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-512,OAUTHBEARER",
            "listener.name.scram.sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "listener.name.scram.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "listener.name.plain.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.plain.plain.sasl.jaas.config": (
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'user_{USER}="{PASSWORD}";'
            ),
            "listener.name.oauth.sasl.enabled.mechanisms": "OAUTHBEARER",
            # No callback handler: Kafka's unsecured JWT validator (alg none, exp checked).
            "listener.name.oauth.oauthbearer.sasl.jaas.config": (
                "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;"
            ),
        }
        path = self.dir / "server.properties"
        kept = [
            line
            for line in path.read_text().splitlines()
            if line.split("=", 1)[0] not in props and not line.startswith("advertised.")
        ]
        path.write_text("\n".join(kept + [f"{k}={v}" for k, v in props.items()]) + "\n")

    def format_command(self, java_bin: str, classpath: str, cluster_id: str) -> list[str]:
        scram = f"SCRAM-SHA-512=[name={USER},password={PASSWORD}]"
        return [*super().format_command(java_bin, classpath, cluster_id), "--add-scram", scram]


def _keystore(leaf: trustme.LeafCert, path: Path) -> None:
    """Kafka's PEM keystore: the key as unencrypted PKCS#8 (trustme writes RSA keys as
    PKCS#1, which Kafka refuses), then the certificate chain."""
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    pkcs8 = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(pkcs8 + b"".join(c.bytes() for c in leaf.cert_chain_pems))


class SecureBroker(KRaftCluster):
    """A one-node KRaft broker with the listeners of the module's table. `ca_file` is the
    CA clients trust, `client_cert`/`client_key` a certificate it signed (mTLS),
    `other_ca_file` a CA that signed nothing of the broker's."""

    kind = "local-kraft-secure"

    def __init__(self, *, start_timeout: float = 120.0) -> None:
        self._ports = dict(
            zip([*LISTENERS, "CONTROLLER"], free_ports(len(LISTENERS) + 1), strict=True)
        )
        super().__init__(1, start_timeout=start_timeout)

    def _make_nodes(self) -> list[Node]:
        certs = self.root / "certs"
        certs.mkdir()
        self._write_certs(certs)
        return [SecureNode(self.root, self._ports, certs)]

    def _write_certs(self, certs: Path) -> None:
        ca, other = trustme.CA(), trustme.CA()
        ca.cert_pem.write_to_path(str(certs / "ca.pem"))
        other.cert_pem.write_to_path(str(certs / "other-ca.pem"))
        rsa = trustme.KeyType.RSA
        server = ca.issue_cert(HOST, "127.0.0.1", key_type=rsa)
        _keystore(server, certs / "server.pem")
        past = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
        expired = ca.issue_cert(
            HOST, "127.0.0.1", not_before=past - dt.timedelta(days=30), not_after=past, key_type=rsa
        )
        _keystore(expired, certs / "expired.pem")
        wrong = ca.issue_cert("wrong.example", key_type=rsa)
        _keystore(wrong, certs / "wronghost.pem")
        client = ca.issue_cert("sidecar-client", key_type=rsa)
        client.cert_chain_pems[0].write_to_path(str(certs / "client.pem"))
        client.private_key_pem.write_to_path(str(certs / "client.key"))
        self.ca_file = certs / "ca.pem"
        self.other_ca_file = certs / "other-ca.pem"
        self.client_cert = certs / "client.pem"
        self.client_key = certs / "client.key"

    def listener(self, name: str) -> str:
        """host:port of a listener of the table."""
        if name not in self._ports:
            raise BrokerError(f"no listener {name}: {sorted(self._ports)}")
        return f"{HOST}:{self._ports[name]}"

    def describe(self) -> str:
        return f"{super().describe()} with SSL, mTLS, SCRAM, PLAIN and OAUTHBEARER listeners"
