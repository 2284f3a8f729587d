"""Certificates, keys and kubeconfigs generated for one cluster run.

Every component authenticates the way it does in a kubeadm cluster, so RBAC and
the Node authorizer behave as they do on a real cluster: the kubelet is
`system:node:<name>` in group `system:nodes`, the controller manager and the
scheduler use their bootstrap identities, and the admin is in `system:masters`.
ECDSA P-256 keys keep generation instant; every component accepts them.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from localcluster.layout import KUBECONFIG_CONTEXT, RunLayout

_VALIDITY = datetime.timedelta(days=365)
_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class ClientIdentity:
    """Who a client certificate says its holder is."""

    file_stem: str
    common_name: str
    organization: str | None = None


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_private(path: Path, data: bytes) -> None:
    # Create the file 0600 from the start: a key must never be readable, even briefly.
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


class CertificateAuthority:
    """The cluster CA: signs every serving and client certificate of the run."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> None:
        self.key = key
        self.certificate = certificate

    @classmethod
    def load_or_create(cls, directory: Path) -> CertificateAuthority:
        cert_path, key_path = directory / "ca.crt", directory / "ca.key"
        if cert_path.exists() and key_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{key_path} is not an ECDSA key")
            return cls(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))
        key = _new_key()
        now = datetime.datetime.now(datetime.UTC)
        subject = _name("localcluster-ca")
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + 10 * _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        _write_private(key_path, _key_pem(key))
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return cls(key, certificate)

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        directory: Path,
        stem: str,
        subject: x509.Name,
        *,
        server_names: tuple[str, ...] = (),
        server_ips: tuple[_IPAddress, ...] = (),
        client: bool = False,
    ) -> tuple[Path, Path]:
        """Write `<stem>.crt` and `<stem>.key`, unless both already exist."""
        cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
        if cert_path.exists() and key_path.exists():
            return cert_path, key_path
        key = _new_key()
        now = datetime.datetime.now(datetime.UTC)
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        if server_names or server_ips:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        if server_names or server_ips:
            alternative_names: list[x509.GeneralName] = [x509.DNSName(n) for n in server_names]
            alternative_names.extend(x509.IPAddress(ip) for ip in server_ips)
            builder = builder.add_extension(
                x509.SubjectAlternativeName(alternative_names), critical=False
            )
        certificate = builder.sign(self.key, hashes.SHA256())
        _write_private(key_path, _key_pem(key))
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return cert_path, key_path

    def issue_client(self, directory: Path, identity: ClientIdentity) -> tuple[Path, Path]:
        return self.issue(
            directory,
            identity.file_stem,
            _name(identity.common_name, identity.organization),
            client=True,
        )


def ensure_service_account_keys(directory: Path) -> tuple[Path, Path]:
    """The key pair that signs and verifies service-account tokens."""
    private_path, public_path = directory / "sa.key", directory / "sa.pub"
    if private_path.exists() and public_path.exists():
        return private_path, public_path
    key = _new_key()
    _write_private(private_path, _key_pem(key))
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private_path, public_path


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca_file: Path,
    cert_file: Path,
    key_file: Path,
    context: str,
    user: str,
) -> None:
    """A kubeconfig (JSON is valid YAML) that refers to the run's PKI files by path."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": context, "cluster": {"server": server, "certificate-authority": str(ca_file)}}
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate": str(cert_file), "client-key": str(key_file)},
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": context, "user": user}}],
        "current-context": context,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(config, handle, indent=2)
        handle.write("\n")


def write_cluster_credentials(layout: RunLayout, node_name: str) -> None:
    """Every certificate and kubeconfig the run's components use; existing ones are kept."""
    pki, net = layout.pki, layout.network
    ca = CertificateAuthority.load_or_create(pki)
    ensure_service_account_keys(pki)
    ca.issue(
        pki,
        "apiserver",
        _name("kube-apiserver"),
        server_names=(
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "localhost",
        ),
        server_ips=(net.node_ip, net.kubernetes_service_ip),
    )
    ca.issue(
        pki,
        "kubelet-serving",
        _name(node_name),
        server_names=(node_name,),
        server_ips=(net.node_ip,),
    )
    ca.issue_client(
        pki,
        ClientIdentity(
            "apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"
        ),
    )
    kubeconfigs = {
        layout.admin_kubeconfig: ClientIdentity("admin", "localcluster-admin", "system:masters"),
        layout.component_kubeconfig("kube-controller-manager"): ClientIdentity(
            "kube-controller-manager", "system:kube-controller-manager"
        ),
        layout.component_kubeconfig("kube-scheduler"): ClientIdentity(
            "kube-scheduler", "system:kube-scheduler"
        ),
        layout.component_kubeconfig("kubelet"): ClientIdentity(
            "kubelet", f"system:node:{node_name}", "system:nodes"
        ),
        layout.component_kubeconfig("kube-proxy"): ClientIdentity(
            "kube-proxy", "system:kube-proxy"
        ),
    }
    for path, identity in kubeconfigs.items():
        cert, key = ca.issue_client(pki, identity)
        write_kubeconfig(
            path,
            server=net.apiserver_url,
            ca_file=pki / "ca.crt",
            cert_file=cert,
            key_file=key,
            context=KUBECONFIG_CONTEXT,
            user=identity.common_name,
        )
