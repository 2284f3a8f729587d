"""The run's certificates say what each component is, and chain to the CA."""

from __future__ import annotations

import ipaddress
import json
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from localcluster.layout import RunLayout
from localcluster.pki import (
    CertificateAuthority,
    ClientIdentity,
    ensure_service_account_keys,
    write_cluster_credentials,
    write_kubeconfig,
)


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_client_certificate_carries_user_and_group_and_is_signed_by_the_ca(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path)
    cert_path, key_path = ca.issue_client(
        tmp_path, ClientIdentity("kubelet", "system:node:n1", "system:nodes")
    )
    certificate = _load(cert_path)
    assert (
        certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:n1"
    )
    assert (
        certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
        == "system:nodes"
    )
    usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    certificate.verify_directly_issued_by(ca.certificate)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_serving_certificate_names_every_address_clients_use(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path)
    ip = ipaddress.IPv4Address("10.244.0.1")
    cert_path, _ = ca.issue(
        tmp_path,
        "apiserver",
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api")]),
        server_names=("kubernetes.default.svc",),
        server_ips=(ip,),
    )
    names = _load(cert_path).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["kubernetes.default.svc"]
    assert names.get_values_for_type(x509.IPAddress) == [ip]


def test_existing_material_is_reused(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path)
    again = CertificateAuthority.load_or_create(tmp_path)
    assert again.pem == ca.pem
    first = ca.issue_client(tmp_path, ClientIdentity("admin", "admin", "system:masters"))
    content = first[0].read_bytes()
    ca.issue_client(tmp_path, ClientIdentity("admin", "admin", "system:masters"))
    assert first[0].read_bytes() == content
    private, public = ensure_service_account_keys(tmp_path)
    assert ensure_service_account_keys(tmp_path) == (private, public)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600


def test_ca_is_a_ca_and_keys_are_p256(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path)
    constraints = ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca
    assert isinstance(ca.key.curve, ec.SECP256R1)


def test_kubeconfig_points_at_the_run_files(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    write_kubeconfig(
        path,
        server="https://10.244.0.1:6443",
        ca_file=tmp_path / "ca.crt",
        cert_file=tmp_path / "a.crt",
        key_file=tmp_path / "a.key",
        context="localcluster",
        user="admin",
    )
    config = json.loads(path.read_text())
    assert config["current-context"] == "localcluster"
    assert config["clusters"][0]["cluster"]["server"] == "https://10.244.0.1:6443"
    assert config["users"][0]["user"]["client-key"] == str(tmp_path / "a.key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def _subject(path: Path) -> tuple[str, list[str]]:
    subject = _load(path).subject
    common_name = subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    groups = [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return str(common_name), [str(g) for g in groups]


def test_cluster_credentials_give_each_component_its_kubeadm_identity(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path)
    write_cluster_credentials(layout, "node-7")
    users = {}
    for path in [layout.admin_kubeconfig, *sorted((tmp_path / "kubeconfigs").iterdir())]:
        config = json.loads(path.read_text())
        assert config["clusters"][0]["cluster"]["server"] == layout.network.apiserver_url
        users[path.name] = _subject(Path(config["users"][0]["user"]["client-certificate"]))
    assert users == {
        "kubeconfig": ("localcluster-admin", ["system:masters"]),
        "kube-controller-manager.kubeconfig": ("system:kube-controller-manager", []),
        "kube-proxy.kubeconfig": ("system:kube-proxy", []),
        "kube-scheduler.kubeconfig": ("system:kube-scheduler", []),
        "kubelet.kubeconfig": ("system:node:node-7", ["system:nodes"]),
    }
    serving = _load(layout.pki / "apiserver.crt").extensions
    names = serving.get_extension_for_class(x509.SubjectAlternativeName).value
    # Pods reach the API server through the `kubernetes` Service address.
    assert layout.network.kubernetes_service_ip in names.get_values_for_type(x509.IPAddress)
    assert "kubernetes.default.svc" in names.get_values_for_type(x509.DNSName)
    kubelet_names = _load(layout.pki / "kubelet-serving.crt").extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert kubelet_names.value.get_values_for_type(x509.DNSName) == ["node-7"]


def test_cluster_credentials_are_kept_when_written_again(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path)
    write_cluster_credentials(layout, "node-7")
    before = {p: p.read_bytes() for p in layout.pki.iterdir()}
    write_cluster_credentials(layout, "node-7")
    assert {p: p.read_bytes() for p in layout.pki.iterdir()} == before
