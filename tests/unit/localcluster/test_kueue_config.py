"""hack/localcluster/kueue.py, pure parts: Kueue's webhook manifests turned into loopback URL client
configs, the Configuration, and the loopback serving certificate."""

from __future__ import annotations

import base64
import ipaddress
from pathlib import Path

import yaml
from cryptography import x509

from localcluster.certs import ensure_loopback_serving
from localcluster.kueue import configuration, webhook_configurations

# The shape of Kueue's config/components/webhook/manifests.yaml (two of its many webhooks per kind).
MANIFESTS = """
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: mutating-webhook-configuration
webhooks:
- admissionReviewVersions: [v1]
  clientConfig:
    service: {name: webhook-service, namespace: system, path: /mutate-batch-v1-job}
  failurePolicy: Fail
  name: mjob.kb.io
  rules: [{apiGroups: [batch], apiVersions: [v1], operations: [CREATE], resources: [jobs]}]
  sideEffects: None
- admissionReviewVersions: [v1]
  clientConfig:
    service: {name: webhook-service, namespace: system, path: /mutate--v1-pod}
  failurePolicy: Fail
  name: mpod.kb.io
  rules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods]}]
  sideEffects: None
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: validating-webhook-configuration
webhooks:
- admissionReviewVersions: [v1]
  clientConfig:
    service: {name: webhook-service, namespace: system, path: /validate-kueue-x-k8s-io-v1beta1-clusterqueue}
  failurePolicy: Fail
  name: vclusterqueue.kb.io
  rules: [{apiGroups: [kueue.x-k8s.io], apiVersions: [v1beta1], operations: [CREATE], resources: [clusterqueues]}]
  sideEffects: None
- admissionReviewVersions: [v1]
  clientConfig:
    service: {name: webhook-service, namespace: system, path: /validate-apps-v1-deployment}
  failurePolicy: Fail
  name: vdeployment.kb.io
  rules: [{apiGroups: [apps], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [deployments]}]
  sideEffects: None
"""


def test_only_served_webhooks_are_kept_and_point_at_loopback() -> None:
    mutating, validating = webhook_configurations(MANIFESTS, 9443, b"PEM")
    assert mutating["metadata"] == {"name": "kueue-mutating-webhook-configuration"}
    assert validating["metadata"] == {"name": "kueue-validating-webhook-configuration"}
    # Pods and Deployments are not integrated here: Kueue would not serve them (failurePolicy Fail).
    assert [h["name"] for h in mutating["webhooks"]] == ["mjob.kb.io"]
    assert [h["name"] for h in validating["webhooks"]] == ["vclusterqueue.kb.io"]
    job = mutating["webhooks"][0]
    assert job["clientConfig"] == {
        "url": "https://127.0.0.1:9443/mutate-batch-v1-job",
        "caBundle": base64.b64encode(b"PEM").decode(),
    }
    assert job["failurePolicy"] == "Fail" and job["rules"][0]["resources"] == ["jobs"]  # the rest as Kueue ships it
    assert yaml.safe_load(yaml.safe_dump(job)) == job


def test_configuration_for_a_local_process() -> None:
    cfg = configuration(9443, 8081, Path("/tmp/certs"))
    assert cfg["webhook"] == {"host": "127.0.0.1", "port": 9443, "certDir": "/tmp/certs"}
    assert cfg["internalCertManagement"] == {"enable": False} and cfg["manageJobsWithoutQueueName"] is False
    assert cfg["integrations"] == {"frameworks": ["batch/job"]} and cfg["health"]["healthProbeBindAddress"].startswith(
        "127.0.0.1:"
    )


def test_loopback_serving_certificate_is_signed_by_its_ca(tmp_path: Path) -> None:
    pki = ensure_loopback_serving(tmp_path / "pki", "kueue-webhook")
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    cert = x509.load_pem_x509_certificate(pki.serving_cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    again = ensure_loopback_serving(tmp_path / "pki", "kueue-webhook")
    assert again.serving_cert.read_bytes() == pki.serving_cert.read_bytes()  # reused while valid
