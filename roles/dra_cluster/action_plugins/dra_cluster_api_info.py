"""Action dra_cluster_api_info: what the API server runs and serves, read in
Ansible's own process on the controller.

The preflight of every run needs two answers: the server's Kubernetes version
and the kinds it serves in one API group version (resource.k8s.io/v1).
kubernetes.core.k8s_cluster_info gives both, but it runs as a module (a new
Python process per task) and discovers every API group of the server, which
took 1.2-2.8 s a run here; this asks `/version` and the one group version.

Arguments:
  kubeconfig     path of the kubeconfig (required)
  context        context in it (required: never the current one)
  group_version  the API group version to list, e.g. resource.k8s.io/v1

Returns git_version (e.g. v1.37.2) and served_kinds (sorted; [] when the
server does not serve that group version). Fails, with msg naming the
kubeconfig and context, when the kubeconfig cannot be used or the server
cannot be reached. Read-only: runs in check mode too, never reports a change.
"""

from __future__ import annotations

import json
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from kubernetes import client, config

# Seconds per request: a server that does not answer is an error, not a hang.
REQUEST_TIMEOUT = 15


def _get(api_client: client.ApiClient, path: str) -> tuple[int, Any]:
    """GET path on the server: (status, parsed JSON body or None)."""
    method, url, headers, _body, _post_params = api_client.param_serialize(
        method="GET", resource_path=path, auth_settings=["BearerToken"]
    )
    response = api_client.call_api(
        method, url, header_params=headers, _request_timeout=REQUEST_TIMEOUT
    )
    data = response.read()
    if not 200 <= response.status < 300:
        return response.status, None
    return response.status, json.loads(data)


def api_info(kubeconfig: str, context: str, group_version: str) -> dict[str, Any]:
    """{git_version, served_kinds} of the server; raises RuntimeError with a
    readable message when the server cannot be asked."""
    try:
        api_client = config.new_client_from_config(config_file=kubeconfig, context=context)
    except (config.ConfigException, OSError, ValueError) as error:
        raise RuntimeError(f"the kubeconfig cannot be used: {error}") from error
    listing_path = f"/apis/{group_version}" if "/" in group_version else f"/api/{group_version}"
    with api_client:
        try:
            version_status, version = _get(api_client, "/version")
            listing_status, listing = _get(api_client, listing_path)
        except Exception as error:  # urllib3 and ssl errors: no common base class
            raise RuntimeError(f"the API server cannot be reached: {error}") from error
    if version is None:
        raise RuntimeError(f"the API server answered {version_status} to GET /version")
    # 404: the server does not serve that group version.
    if listing is None and listing_status != 404:
        raise RuntimeError(f"the API server answered {listing_status} to GET {listing_path}")
    # Subresources (pods/status) are listed too, with a slash in their name.
    kinds = {
        str(resource["kind"])
        for resource in (listing or {}).get("resources") or []
        if "/" not in str(resource.get("name", ""))
    }
    return {"git_version": str(version.get("gitVersion", "")), "served_kinds": sorted(kinds)}


class ActionModule(ActionBase):  # type: ignore[misc]
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True
    _VALID_ARGS = frozenset(("kubeconfig", "context", "group_version"))

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        args = {name: self._task.args.get(name) for name in self._VALID_ARGS}
        for name, value in args.items():
            if not isinstance(value, str) or not value:
                raise AnsibleActionFail(f"{name} must be a non-empty string")
        try:
            result.update(api_info(args["kubeconfig"], args["context"], args["group_version"]))
        except RuntimeError as error:
            result.update(failed=True, msg=str(error))
        result["changed"] = False
        return result
