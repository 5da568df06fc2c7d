"""docker-compose.yml and the Dockerfile, checked as files (no Docker engine runs here)."""

from __future__ import annotations

import re

import pytest

from rag.config import Settings
from tests.helpers import ROOT

pytestmark = pytest.mark.quick  # pure: no model, no Milvus

yaml = pytest.importorskip("yaml", reason="PyYAML reads docker-compose.yml (requirements-dev.txt)")

MILVUS_SERVICES = ("etcd", "minio", "milvus")


@pytest.fixture(scope="module")
def compose() -> dict:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_the_official_standalone_layout_plus_the_app(services):
    assert set(services) == {*MILVUS_SERVICES, "app"}
    milvus = services["milvus"]
    assert milvus["command"] == ["milvus", "run", "standalone"]
    env = environment(milvus)
    assert env["ETCD_ENDPOINTS"] == "etcd:2379" and env["MINIO_ADDRESS"] == "minio:9000"
    assert "19530:19530" in milvus["ports"]
    assert {name: dep["condition"] for name, dep in milvus["depends_on"].items()} == {
        "etcd": "service_healthy",
        "minio": "service_healthy",
    }


@pytest.mark.parametrize("name", MILVUS_SERVICES)
def test_images_are_pinned(services, name):
    image = services[name]["image"]
    repo, _, tag = image.rpartition(":")
    assert repo and tag and "/" not in tag, f"{name}: {image} has no tag"
    assert tag != "latest" and not tag.endswith("-latest"), f"{name}: {image} is not pinned"
    if name == "milvus":
        assert repo == "milvusdb/milvus" and re.fullmatch(r"v2\.[56]\.\d+", tag), image
    if name == "etcd":
        assert re.fullmatch(r"v3\.5\.\d+", tag), image
    if name == "minio":
        assert re.fullmatch(r"RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ", tag), image


def test_every_service_has_a_health_check(services):
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name} has no health check"


def test_the_app_uses_the_milvus_service(services):
    app = services["app"]
    assert app["build"] in (".", {"context": "."}) or app["build"].get("context") == "."
    assert "image" not in app or not app["image"].endswith(":latest")
    env = environment(app)
    assert env["MILVUS_URI"] == "http://milvus:19530"
    settings = Settings(_env_file=None, MILVUS_URI=env["MILVUS_URI"])
    assert settings.is_milvus_server and settings.milvus_display == "Milvus server http://milvus:19530"
    assert app["depends_on"]["milvus"]["condition"] == "service_healthy"
    assert "8501:8501" in app["ports"]
    assert app["hostname"], "a stable hostname: recovery recognises the documents a dead container left"
    assert "_stcore/health" in " ".join(app["healthcheck"]["test"])


def test_data_lives_in_declared_named_volumes(compose, services):
    declared = set(compose.get("volumes") or {})
    for name in (*MILVUS_SERVICES, "app"):
        mounts = services[name].get("volumes") or []
        assert mounts, f"{name} keeps no data"
        for mount in mounts:
            source = mount.split(":", 1)[0] if isinstance(mount, str) else mount["source"]
            assert source in declared, f"{name}: {source} is not a declared named volume"
    assert declared == {"etcd-data", "minio-data", "milvus-data", "app-data"}


def test_dockerfile_installs_the_pinned_requirements_and_runs_streamlit():
    dockerfile = ROOT / "Dockerfile"
    assert dockerfile.is_file()
    lines = [line.strip() for line in dockerfile.read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    froms = [line.split()[1] for line in instructions if line.startswith("FROM ")]
    assert froms and all(image == "python:3.11-slim" for image in froms)
    copies = [line for line in instructions if line.startswith("COPY ") and "--from" not in line]
    assert any("requirements.txt" in c.split() and "constraints.txt" in c.split() for c in copies)
    text = dockerfile.read_text()
    assert "pip install -r requirements.txt -c constraints.txt" in text
    cmd = [line for line in instructions if line.startswith("CMD ")][-1]  # the last CMD counts
    argv = yaml.safe_load(cmd[4:])  # the exec form is a JSON (so YAML) list
    assert argv[:3] == ["streamlit", "run", "app.py"] and argv[argv.index("--server.address") + 1] == "0.0.0.0"
    assert "EXPOSE 8501" in instructions


def test_dockerignore_keeps_secrets_and_local_state_out():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".env", ".venv", ".git", "data/*"} <= ignored


def test_the_app_password_is_passed_through_and_off_by_default(services):
    env = environment(services["app"])
    assert env["RAG_APP_PASSWORD"] == "${RAG_APP_PASSWORD:-}", "set on the host, empty (off) when not"
    assert not Settings(_env_file=None, RAG_APP_PASSWORD="").password_required
    assert Settings(_env_file=None, RAG_APP_PASSWORD="s3cret").password_matches("s3cret")
