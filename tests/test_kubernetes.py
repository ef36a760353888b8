"""The Kubernetes manifests (deploy/kubernetes/) build and validate offline.

No cluster and no kustomize binary run here, so `build` assembles an
overlay in Python the way `kubectl apply -k` would for the fields used
(resources, namespace, images; any other field fails, so the builder cannot
quietly drift from kustomize), and `validate` checks each resulting
resource: the core kinds against Kubernetes' own OpenAPI schemas for
KUBERNETES_VERSION (kubernetes-validate ships them, strict: unknown fields
are errors), the CloudNativePG Cluster for the fields the operator
requires. Then the tests check what the lab depends on: the switches each
variant sets, the probes, the Secrets, that every name a manifest points
at exists.
"""

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from labcore import registry
from labcore.connections import with_password

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = ["stateful", "stateless"]
KUBERNETES_VERSION = "1.33.0"
KUSTOMIZE_FIELDS = {"apiVersion", "kind", "namespace", "resources", "images"}
CLUSTER_SCALED = {"Namespace", "PersistentVolume", "ClusterRole", "ClusterRoleBinding", "StorageClass"}
# Secrets the manifests read but do not contain: made by hand (docs/operations/kubernetes.md) and by the operator.
SECRETS_FROM_OUTSIDE = {"lab-secret": {"SECRET_KEY", "REDIS_PASSWORD"}, "lab-db-app": {"uri"}}
REDIS_PASSWORD = {"name": "lab-secret", "key": "REDIS_PASSWORD"}


class ManifestError(Exception):
    """A manifest that kubectl or the cluster would refuse."""


def build(folder):
    """Return the resources of a kustomization folder, as `kubectl kustomize` would."""
    folder = Path(folder)
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KUSTOMIZE_FIELDS
    if unknown:
        raise ManifestError(f"{folder}: kustomization fields this builder does not do: {sorted(unknown)}")
    resources = []
    for entry in kustomization.get("resources", []):
        path = (folder / entry).resolve()
        if path.is_dir():
            resources += build(path)
        elif path.is_file():
            resources += load(path)
        else:
            raise ManifestError(f"{folder}: resource {entry} does not exist")
    for resource in resources:
        if "namespace" in kustomization and resource.get("kind") not in CLUSTER_SCALED:
            resource.setdefault("metadata", {})["namespace"] = kustomization["namespace"]
        for container in containers(resource):
            for image in kustomization.get("images", []):
                name, _, tag = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
    return resources


def load(path):
    """Return the resources of one YAML file; ManifestError if it is not YAML of mappings."""
    try:
        documents = list(yaml.safe_load_all(Path(path).read_text()))
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not YAML: {exc}") from None
    resources = [document for document in documents if document is not None]
    for resource in resources:
        if not isinstance(resource, dict):
            raise ManifestError(f"{path}: a document is not a mapping")
    return resources


def validate(resource):
    """Raise ManifestError naming what is wrong with one resource."""
    name = f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"
    if resource.get("apiVersion", "").startswith("postgresql.cnpg.io/"):
        return validate_cnpg_cluster(resource, name)
    try:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(part) for part in exc.path)
        raise ManifestError(f"{name}: {path}: {exc.message}") from None
    except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as exc:
        raise ManifestError(f"{name}: no schema for it in Kubernetes {KUBERNETES_VERSION}: {exc}") from None


def validate_cnpg_cluster(resource, name):
    """CloudNativePG's Cluster: the fields the operator needs, and sane synchronous replication."""
    if resource.get("apiVersion") != "postgresql.cnpg.io/v1" or resource.get("kind") != "Cluster":
        raise ManifestError(f"{name}: only postgresql.cnpg.io/v1 Cluster is known here")
    spec = resource.get("spec") or {}
    problems = []
    if not resource.get("metadata", {}).get("name"):
        problems.append("metadata.name is missing")
    instances = spec.get("instances")
    if not isinstance(instances, int) or instances < 1:
        problems.append("spec.instances must be a whole number of at least 1")
    size = (spec.get("storage") or {}).get("size")
    if not isinstance(size, str) or not size[:1].isdigit():
        problems.append("spec.storage.size must be a quantity such as 2Gi")
    synchronous = (spec.get("postgresql") or {}).get("synchronous")
    if synchronous is not None:
        if synchronous.get("method") not in {"any", "first"}:
            problems.append("spec.postgresql.synchronous.method must be any or first")
        number = synchronous.get("number")
        if not isinstance(number, int) or not isinstance(instances, int) or not 0 < number < instances:
            problems.append("spec.postgresql.synchronous.number must be between 1 and instances - 1")
    if problems:
        raise ManifestError(f"{name}: " + "; ".join(problems))


def validate_folder(folder):
    """Build and validate every resource of a kustomization; return them."""
    resources = build(folder)
    for resource in resources:
        validate(resource)
    return resources


def containers(resource):
    spec = pod_spec(resource)
    if spec is None:
        return []
    return spec.get("initContainers", []) + spec.get("containers", [])


def pod_spec(resource):
    spec = resource.get("spec") or {}
    if resource.get("kind") == "Pod":
        return spec
    if resource.get("kind") in {"Deployment", "StatefulSet", "Job", "DaemonSet"}:
        return spec["template"]["spec"]
    return None


def find(resources, kind, name):
    found = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request):
    return request.param, validate_folder(KUBERNETES / "overlays" / request.param)


def test_every_resource_of_each_overlay_is_valid(overlay):
    name, resources = overlay
    kinds = {r["kind"] for r in resources}
    assert {"Deployment", "Service", "Job", "Cluster", "ConfigMap", "Ingress"} <= kinds
    assert {(r["kind"], r["metadata"]["name"]) for r in resources} == {
        (r["kind"], r["metadata"]["name"]) for r in resources if r["metadata"].get("namespace") == "stateful-lab"
    } | {("Namespace", "stateful-lab")}


def test_each_variant_sets_the_lab_switches(overlay):
    name, resources = overlay
    config = find(resources, "ConfigMap", "site-config")["data"]
    assert config["SESSION_STORE"] in registry.SESSION_STORES
    assert config["PRESENCE_STORE"] in registry.PRESENCE_STORES
    ingress = find(resources, "Ingress", "site")
    annotations = ingress["metadata"].get("annotations", {})
    if name == "stateful":
        assert (config["SESSION_STORE"], config["PRESENCE_STORE"]) == ("memory", "memory")
        assert annotations["nginx.ingress.kubernetes.io/affinity"] == "cookie"
        assert annotations["nginx.ingress.kubernetes.io/session-cookie-name"]
    else:
        assert (config["SESSION_STORE"], config["PRESENCE_STORE"]) == ("redis", "redis")
        assert "nginx.ingress.kubernetes.io/affinity" not in annotations
        redis_host = urlsplit(config["REDIS_URL"]).hostname
        find(resources, "Service", redis_host)
        assert find(resources, "StatefulSet", "redis")["spec"]["replicas"] == 3
        sentinel = find(resources, "ConfigMap", "redis-config")["data"]["start-sentinel.sh"]
        assert "sentinel monitor lab" in sentinel


def test_the_site_runs_as_the_lab_expects(overlay):
    _, resources = overlay
    deployment = find(resources, "Deployment", "site")
    spec = pod_spec(deployment)
    (site,) = spec["containers"]
    assert site["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert site["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert site["resources"]["requests"] and site["resources"]["limits"]
    env = {item["name"]: item for item in site["env"]}
    assert env["INSTANCE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["SECRET_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "lab-secret"
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "lab-db-app", "key": "uri"}
    # The probes' Host header must be one the site answers to, or every probe is a 400.
    allowed = find(resources, "ConfigMap", "site-config")["data"]["ALLOWED_HOSTS"].split(",")
    for probe in ("readinessProbe", "livenessProbe"):
        (host,) = site[probe]["httpGet"]["httpHeaders"]
        assert host["name"] == "Host" and host["value"] in allowed
    cluster = find(resources, "Cluster", "lab-db")
    assert f"{cluster['metadata']['name']}-app" == "lab-db-app"  # the operator's name for its app Secret
    assert cluster["spec"]["instances"] == 3 and cluster["spec"]["postgresql"]["synchronous"]["number"] >= 1
    assert pod_spec(deployment)["securityContext"]["runAsNonRoot"] is True


def test_every_name_a_manifest_points_at_exists(overlay):
    _, resources = overlay
    names = {(r["kind"], r["metadata"]["name"]) for r in resources}
    for resource in resources:
        where = f"{resource['kind']}/{resource['metadata']['name']}"
        for container in containers(resource):
            for source in container.get("envFrom", []):
                assert ("ConfigMap", source["configMapRef"]["name"]) in names, where
            for item in container.get("env", []):
                secret = item.get("valueFrom", {}).get("secretKeyRef")
                if secret:
                    assert secret["key"] in SECRETS_FROM_OUTSIDE.get(secret["name"], ()), (where, secret)
        spec = pod_spec(resource) or {}
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in names, where
        if resource["kind"] == "Service" and "selector" in resource["spec"]:
            selected = [
                r for r in resources if pod_spec(r) is not None and r["kind"] != "Job"
                and resource["spec"]["selector"].items() <= r["spec"]["template"]["metadata"]["labels"].items()
            ]
            assert selected, f"{where} selects no pods"
            ports = {p["name"] for r in selected for c in containers(r) for p in c.get("ports", [])}
            for port in resource["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                assert isinstance(target, int) or target in ports, (where, target)
        if resource["kind"] == "Ingress":
            for rule in resource["spec"]["rules"]:
                for path in rule["http"]["paths"]:
                    assert ("Service", path["backend"]["service"]["name"]) in names, where
    locust = find(resources, "ConfigMap", "locust-config")["data"]["LOCUST_HOST"]
    allowed = find(resources, "ConfigMap", "site-config")["data"]["ALLOWED_HOSTS"].split(",")
    assert urlsplit(locust).hostname in allowed


def secret_of(container, variable):
    """The Secret and key that `variable` of container comes from, or None."""
    item = next((item for item in container.get("env", []) if item["name"] == variable), {})
    ref = item.get("valueFrom", {}).get("secretKeyRef")
    return ref and {"name": ref["name"], "key": ref["key"]}


def test_redis_asks_everyone_for_the_password():
    resources = validate_folder(KUBERNETES / "overlays" / "stateless")
    # The nodes and Sentinels: redis-cli reads REDISCLI_AUTH, the start scripts hand it on.
    for container in containers(find(resources, "StatefulSet", "redis")):
        assert secret_of(container, "REDISCLI_AUTH") == REDIS_PASSWORD, container["name"]
    scripts = find(resources, "ConfigMap", "redis-config")["data"]
    assert '--requirepass "$REDISCLI_AUTH" --masterauth "$REDISCLI_AUTH"' in scripts["start-redis.sh"]
    sentinel = scripts["start-sentinel.sh"]
    for line in ("requirepass $REDISCLI_AUTH", "sentinel sentinel-pass $REDISCLI_AUTH",
                 "sentinel auth-pass lab $REDISCLI_AUTH"):
        assert f"\n{line}\n" in sentinel, line
    # The proxy's checks log in before they ask who is master.
    (haproxy,) = containers(find(resources, "Deployment", "redis-proxy"))
    assert secret_of(haproxy, "REDIS_PASSWORD") == REDIS_PASSWORD
    checks = find(resources, "ConfigMap", "redis-proxy-config")["data"]["haproxy.cfg"]
    assert checks.index('tcp-check send "AUTH ${REDIS_PASSWORD}\\r\\n"') < checks.index("tcp-check send PING")
    # The site: the Secret's password goes into the ConfigMap's URL.
    (site,) = pod_spec(find(resources, "Deployment", "site"))["containers"]
    assert secret_of(site, "REDIS_PASSWORD") == REDIS_PASSWORD
    url = find(resources, "ConfigMap", "site-config")["data"]["REDIS_URL"]
    assert urlsplit(url).password is None, "a password in a ConfigMap"
    assert urlsplit(with_password(url, "from-the-secret")).password == "from-the-secret"


def redis_answers(url, password):
    """Whether the site, given REDIS_URL=url and REDIS_PASSWORD=password, is let into Redis."""
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "labsite.settings", "DEBUG": "1",
                   "REDIS_URL": url, "REDIS_PASSWORD": password}
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c",
         "import redis; from django.conf import settings; print(redis.Redis.from_url(settings.REDIS_URL).ping())"],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120,
    )
    return done.stdout.split()[-1:] == ["True"]


def test_the_site_logs_in_to_redis_with_the_secret_s_password(redis_service):
    # As in the overlay: the URL from the ConfigMap carries no password, the Secret gives it.
    bare = urlsplit(redis_service.url)._replace(netloc=urlsplit(redis_service.url).netloc.rpartition("@")[2])
    assert redis_answers(bare.geturl(), redis_service.password)
    assert not redis_answers(bare.geturl(), "a-wrong-password")


def reaching(resources, target):
    """The names of the pod templates a NetworkPolicy lets reach target's pods, or "anyone"."""
    labels = target["spec"]["template"]["metadata"]["labels"]
    policies = [r for r in resources if r["kind"] == "NetworkPolicy"
                and r["spec"]["podSelector"]["matchLabels"].items() <= labels.items()]
    if not policies:
        return "anyone"
    allowed = set()
    for rule in (rule for policy in policies for rule in policy["spec"].get("ingress", [])):
        sources = rule.get("from")
        if not sources or any(set(source) != {"podSelector"} for source in sources):
            return "anyone"  # no `from`, or a namespace or an address block: not only these pods
        for source in sources:
            wanted = source["podSelector"]["matchLabels"].items()
            allowed |= {r["metadata"]["name"] for r in resources if pod_spec(r) is not None and r["kind"] != "Job"
                        and wanted <= r["spec"]["template"]["metadata"]["labels"].items()}
    return allowed


def test_only_the_site_reaches_redis():
    resources = validate_folder(KUBERNETES / "overlays" / "stateless")
    # The site reaches Redis through the proxy; replication and the Sentinels go node to node.
    assert reaching(resources, find(resources, "Deployment", "redis-proxy")) == {"site"}
    assert reaching(resources, find(resources, "StatefulSet", "redis")) == {"redis", "redis-proxy"}


def test_images_can_be_pointed_at_a_registry(tmp_path):
    overlay = tmp_path / "mine"
    overlay.mkdir()
    base = KUBERNETES / "overlays" / "stateless"
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [str(base)],
        "images": [{"name": "stateful-lab-site", "newName": "registry.example.org/lab/site", "newTag": "1"}],
    }))
    images = {c["image"] for r in validate_folder(overlay) for c in containers(r)}
    assert "registry.example.org/lab/site:1" in images
    assert not any(image.startswith("stateful-lab-site") for image in images)


BROKEN = {
    "a Deployment with a mistyped field": """
apiVersion: apps/v1
kind: Deployment
metadata: {name: site}
spec:
  replicas: three
  selector: {matchLabels: {app: site}}
  template:
    metadata: {labels: {app: site}}
    spec:
      containers: [{name: site, image: site:1}]
""",
    "a Service with an unknown field": """
apiVersion: v1
kind: Service
metadata: {name: site}
spec:
  selector: {app: site}
  ports: [{port: 8000}]
  sessionAfinity: ClientIP
""",
    "a Deployment without containers": """
apiVersion: apps/v1
kind: Deployment
metadata: {name: site}
spec:
  selector: {matchLabels: {app: site}}
  template: {metadata: {labels: {app: site}}, spec: {}}
""",
    "a CloudNativePG Cluster without storage": """
apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata: {name: lab-db}
spec: {instances: 3}
""",
    "a CloudNativePG Cluster waiting for more standbys than it has": """
apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata: {name: lab-db}
spec:
  instances: 2
  storage: {size: 1Gi}
  postgresql: {synchronous: {method: any, number: 2}}
""",
    "a kind the cluster does not know": """
apiVersion: example.org/v1
kind: Widget
metadata: {name: w}
""",
}


@pytest.mark.parametrize("manifest", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_manifest_is_rejected(tmp_path, manifest):
    (tmp_path / "broken.yaml").write_text(manifest)
    (tmp_path / "kustomization.yaml").write_text("resources: [broken.yaml]\n")
    with pytest.raises(ManifestError):
        validate_folder(tmp_path)


def test_a_kustomization_this_builder_cannot_build_is_rejected(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources: []\npatches: [{path: p.yaml}]\n")
    with pytest.raises(ManifestError, match="patches"):
        build(tmp_path)
