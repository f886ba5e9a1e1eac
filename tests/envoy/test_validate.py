"""Every resource translation produces, and every bootstrap, passes a real
``envoy --mode validate``."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidemesh.envoy import ProxyId, ResourceType, Translator
from sidemesh.envoy.bootstrap import BootstrapParams, XdsMode, bootstrap, to_json
from sidemesh.model import MeshState
from tests.helpers.envoy_validate import inline_bootstrap, validate


def test_every_proxys_resources_pass_envoy_validate(
    multi_service_state: MeshState, tmp_path: Path
) -> None:
    translator = Translator()
    kinds_seen: set[ResourceType] = set()
    for name, namespace in [*multi_service_state.workloads, *multi_service_state.gateways]:
        resources = translator.for_proxy(multi_service_state, ProxyId(name, namespace))
        kinds_seen |= {t for t in ResourceType if resources[t]}
        validate(inline_bootstrap(resources), tmp_path, f"{name}.{namespace}.json")
    assert kinds_seen == set(ResourceType)


@pytest.mark.parametrize("mode", list(XdsMode))
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_bootstrap_passes_envoy_validate(mode: XdsMode, host: str, tmp_path: Path) -> None:
    params = BootstrapParams(
        proxy=ProxyId("reviews-v1", "default"),
        service="reviews",
        control_plane_host=host,
        control_plane_port=15010,
        admin_port=15000,
        sds_socket="/tmp/sidemesh-x/sds.sock",
        xds_mode=mode,
    )
    validate(to_json(bootstrap(params)), tmp_path)
