"""A real Milvus server for the tests that need one: standalone 2.3.5 from the PyPI package `milvus`.

Import the fixture into a test module (`from tests.milvus_fixtures import milvus_server`); it starts
one server per module, on a free port, with its data in a temporary folder, and stops it afterwards.
"""

from __future__ import annotations

import pytest

from rag.storage.local_server import LocalMilvusServer, milvus_package_version
from tests.helpers import free_port


@pytest.fixture(scope="module")
def milvus_server(tmp_path_factory) -> LocalMilvusServer:
    if milvus_package_version() is None:
        pytest.skip("the local Milvus server needs the `milvus` package (pip install milvus==2.3.5)")
    # A short stop: a throwaway server needs no graceful shutdown.
    server = LocalMilvusServer(tmp_path_factory.mktemp("milvus-server"), port=free_port(), stop_timeout=5)
    server.start()
    yield server
    server.stop()
