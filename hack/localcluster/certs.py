"""Certificates for the local control plane, generated with ``cryptography``.

One self-signed CA signs everything: the API server's serving certificate and the client
certificates of the admin, kube-controller-manager, kube-scheduler, the node (kubelet), kube-proxy and CoreDNS. The
service-account token signing key is a separate RSA key pair. Keys are ECDSA P-256 (fast to
generate); existing files are reused while they are valid and still match what is asked for,
so a warm start does not regenerate anything.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVICE_IP = "10.0.0.1"
SERVING_DNS = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
SERVING_IPS = ("127.0.0.1", SERVICE_IP)

CA_DAYS = 3650
LEAF_DAYS = 365
_RENEW_BEFORE = dt.timedelta(days=7)

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class ClientIdentity:
    """A client certificate: file stem, user name (CN) and groups (O)."""

    stem: str
    user: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pki:
    """Paths of the generated files."""

    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def serving_cert(self) -> Path:
        return self.dir / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.dir / "apiserver.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    def client_cert(self, stem: str) -> Path:
        return self.dir / f"{stem}.crt"

    def client_key(self, stem: str) -> Path:
        return self.dir / f"{stem}.key"


ADMIN = ClientIdentity("admin", "kubernetes-admin", ("system:masters",))
CONTROLLER_MANAGER = ClientIdentity("controller-manager", "system:kube-controller-manager")
SCHEDULER = ClientIdentity("scheduler", "system:kube-scheduler")
# The real node: the API server's client for `kubectl logs/exec` (kubelet API), kube-proxy (bound to
# the built-in ClusterRole system:node-proxier) and CoreDNS (a ClusterRole the node creates).
APISERVER_KUBELET_CLIENT = ClientIdentity(
    "apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",)
)
KUBE_PROXY = ClientIdentity("kube-proxy", "system:kube-proxy")
COREDNS = ClientIdentity("coredns", "system:coredns")


def node_identity(node_name: str) -> ClientIdentity:
    """The identity the Node authorizer and NodeRestriction admission recognise."""
    return ClientIdentity(f"node-{node_name}", f"system:node:{node_name}", ("system:nodes",))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_key(path: Path) -> PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"{path}: unsupported key type {type(key).__name__}")
    return key


def _load_cert(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _still_valid(cert: x509.Certificate) -> bool:
    return cert.not_valid_after_utc - _RENEW_BEFORE > _now()


def _name(cn: str, groups: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _ensure_ca(pki: Pki) -> tuple[x509.Certificate, PrivateKey]:
    cert = _load_cert(pki.ca_cert)
    if cert is not None and pki.ca_key.exists() and _still_valid(cert):
        return cert, _load_key(pki.ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("trainingjob-operator-local-ca")
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(pki.ca_key, _key_pem(key))
    _write_public(pki.ca_cert, cert.public_bytes(serialization.Encoding.PEM))
    # Everything signed by an older CA is now worthless.
    for p in pki.dir.glob("*.crt"):
        if p != pki.ca_cert:
            p.unlink()
    return cert, key


def _sign_leaf(
    ca: tuple[x509.Certificate, PrivateKey],
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    cert_path: Path,
    key_path: Path,
    san: list[x509.GeneralName] | None = None,
) -> None:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_private(key_path, _key_pem(key))
    _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))


def _leaf_ok(path: Path, key_path: Path, subject: x509.Name, san: list[x509.GeneralName] | None) -> bool:
    cert = _load_cert(path)
    if cert is None or not key_path.exists() or not _still_valid(cert) or cert.subject != subject:
        return False
    if san is None:
        return True
    try:
        have = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return set(have) == set(san)


def serving_san(extra_ips: tuple[str, ...] = ()) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in SERVING_DNS]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in (*SERVING_IPS, *extra_ips)]
    return names


def ensure_pki(directory: Path, clients: list[ClientIdentity], extra_ips: tuple[str, ...] = ()) -> Pki:
    """Create (or reuse) the CA, serving cert (also valid for ``extra_ips``: the real node's host-side
    address), the given client certs and the SA key pair."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    pki = Pki(directory)
    ca = _ensure_ca(pki)

    serving_subject = _name("kube-apiserver")
    san = serving_san(extra_ips)
    if not _leaf_ok(pki.serving_cert, pki.serving_key, serving_subject, san):
        _sign_leaf(ca, serving_subject, ExtendedKeyUsageOID.SERVER_AUTH, pki.serving_cert, pki.serving_key, san)

    for client in clients:
        subject = _name(client.user, client.groups)
        cert_path, key_path = pki.client_cert(client.stem), pki.client_key(client.stem)
        if not _leaf_ok(cert_path, key_path, subject, None):
            _sign_leaf(ca, subject, ExtendedKeyUsageOID.CLIENT_AUTH, cert_path, key_path)

    if not (pki.sa_key.exists() and pki.sa_pub.exists()):
        sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_private(pki.sa_key, _key_pem(sa))
        _write_public(
            pki.sa_pub,
            sa.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        )
    return pki


def ensure_kubelet_serving(pki: Pki, node_name: str, node_ip: str) -> tuple[Path, Path]:
    """The kubelet's serving certificate (node name and node IP), signed by the cluster CA so the API
    server can verify it (``--kubelet-certificate-authority``); returns (cert, key)."""
    ca = _ensure_ca(pki)
    cert, key = pki.client_cert("kubelet-serving"), pki.client_key("kubelet-serving")
    subject = _name(f"system:node:{node_name}", ("system:nodes",))
    san: list[x509.GeneralName] = [x509.DNSName(node_name), x509.IPAddress(ipaddress.ip_address(node_ip))]
    if not _leaf_ok(cert, key, subject, san):
        _sign_leaf(ca, subject, ExtendedKeyUsageOID.SERVER_AUTH, cert, key, san)
    return cert, key


def ensure_loopback_serving(directory: Path, common_name: str) -> Pki:
    """A CA and a serving certificate for ``127.0.0.1``/``localhost`` (a webhook server on loopback,
    e.g. Kueue's); ``pki.ca_cert`` is what a webhook configuration's ``caBundle`` needs."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    pki = Pki(directory)
    ca = _ensure_ca(pki)
    subject = _name(common_name)
    san: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    if not _leaf_ok(pki.serving_cert, pki.serving_key, subject, san):
        _sign_leaf(ca, subject, ExtendedKeyUsageOID.SERVER_AUTH, pki.serving_cert, pki.serving_key, san)
    return pki
