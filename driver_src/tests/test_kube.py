from __future__ import annotations

import json

from kubernetes import client

from dra_file_driver import kube


def test_api_errors_carry_the_servers_message() -> None:
    denied = client.ApiException(status=403, reason="Forbidden")
    denied.body = json.dumps({"message": 'resourceclaims "c" is forbidden: User "x" cannot get'})
    assert kube.describe_error(denied) == (
        'HTTP 403 Forbidden: resourceclaims "c" is forbidden: User "x" cannot get'
    )
    assert kube.status_of(denied) == 403
    assert kube.describe_error(client.ApiException(status=500, reason="Error")) == "HTTP 500 Error"


def test_transport_errors_name_their_type() -> None:
    refused = ConnectionRefusedError(111, "Connection refused")
    assert kube.describe_error(refused) == "ConnectionRefusedError: [Errno 111] Connection refused"
    assert kube.status_of(refused) is None
