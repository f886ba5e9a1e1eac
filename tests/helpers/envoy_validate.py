"""Run a real ``envoy --mode validate`` on configs sidemesh generates."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import json_format

from sidemesh.agent.envoy_binary import find_envoy
from sidemesh.envoy import ProxyResources, ResourceType
from sidemesh.envoy.bootstrap import runtime, sds_cluster
from sidemesh.envoy.filters import HCM_FILTER
from sidemesh.envoy.outbound.demand import route_config_of
from sidemesh.envoy.protos import packed


def validate(config: dict[str, Any], tmp_path: Path, name: str = "envoy.json") -> None:
    """Fail with Envoy's own words if it rejects ``config``."""
    path = tmp_path / name
    path.write_text(json.dumps(config))
    result = subprocess.run(
        [str(find_envoy()), "--mode", "validate", "-c", str(path), "-l", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"envoy rejected {path}:\n{result.stdout}\n{result.stderr}"


def inline_bootstrap(resources: ProxyResources) -> dict[str, Any]:
    """A static bootstrap holding every resource of ``resources``: EDS clusters get
    their assignment inline, RDS listeners their route configuration inline, so Envoy
    checks all four kinds at once. A route configuration whose virtual hosts come over
    VHDS (on demand) gets them inline instead, as Envoy would hold them."""
    routes = {}
    for name, r in resources[ResourceType.ROUTE].items():
        config = route_pb2.RouteConfiguration()
        config.CopyFrom(r.message)
        if config.HasField("vhds"):
            config.ClearField("vhds")
            config.virtual_hosts.extend(
                vhost.message
                for vhost_name, vhost in sorted(resources[ResourceType.VIRTUAL_HOST].items())
                if route_config_of(vhost_name) == name
            )
        routes[name] = config
    assignments = {name: r.message for name, r in resources[ResourceType.ENDPOINT].items()}
    boot = bootstrap_pb2.Bootstrap()
    boot.node.id, boot.node.cluster = "sidecar~validate~default", "validate"
    boot.layered_runtime.CopyFrom(runtime())
    boot.static_resources.clusters.append(sds_cluster("/tmp/sidemesh-validate/sds.sock"))
    for res in resources[ResourceType.CLUSTER].values():
        cluster = cluster_pb2.Cluster()
        cluster.CopyFrom(res.message)
        if cluster.type == cluster_pb2.Cluster.EDS:
            cluster.ClearField("eds_cluster_config")
            cluster.type = cluster_pb2.Cluster.STATIC
            cluster.load_assignment.CopyFrom(assignments[cluster.name])
        boot.static_resources.clusters.append(cluster)
    for res in resources[ResourceType.LISTENER].values():
        listener = listener_pb2.Listener()
        listener.CopyFrom(res.message)
        for chain in listener.filter_chains:
            for flt in chain.filters:
                if flt.name != HCM_FILTER:
                    continue
                hcm = hcm_pb2.HttpConnectionManager()
                flt.typed_config.Unpack(hcm)
                if hcm.HasField("rds"):
                    hcm.route_config.CopyFrom(routes[hcm.rds.route_config_name])
                flt.typed_config.CopyFrom(packed(hcm))
        boot.static_resources.listeners.append(listener)
    return json_format.MessageToDict(boot, preserving_proto_field_name=True)
