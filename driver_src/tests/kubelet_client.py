"""The kubelet's side of the plugin protocol, for tests, benchmarks and debugging.

It lives with the tests, not in the driver's package, so the image does not
carry it.

It follows what the kubelet does with a DRA plugin: read the registration
socket with GetInfo (one second allowed), check the plugin type, pick the
first service version in the plugin's list that it supports, connect to the
endpoint, report the outcome with NotifyRegistrationStatus, then call
NodePrepareResources / NodeUnprepareResources with its 45 s timeout and reject
answers that miss a requested claim or add one that was not requested.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc

from dra_file_driver.kubeletapi import (
    dra_v1_pb2,
    dra_v1_pb2_grpc,
    dra_v1beta1_pb2,
    dra_v1beta1_pb2_grpc,
    pluginregistration_v1_pb2,
    pluginregistration_v1_pb2_grpc,
)

KUBELET_SUPPORTED = ("v1.DRAPlugin", "v1beta1.DRAPlugin")
GET_INFO_TIMEOUT = 1.0
NOTIFY_TIMEOUT = 5.0
CALL_TIMEOUT = 45.0

_MODULES = {
    "v1.DRAPlugin": (dra_v1_pb2, dra_v1_pb2_grpc),
    "v1beta1.DRAPlugin": (dra_v1beta1_pb2, dra_v1beta1_pb2_grpc),
}


class ProtocolError(Exception):
    """The plugin broke the protocol in a way the kubelet would reject."""


@dataclass(frozen=True)
class Claim:
    namespace: str
    name: str
    uid: str


@dataclass(frozen=True)
class PreparedDevice:
    request_names: tuple[str, ...]
    pool_name: str
    device_name: str
    cdi_device_ids: tuple[str, ...]
    share_id: str | None


@dataclass(frozen=True)
class PrepareResult:
    devices: tuple[PreparedDevice, ...]
    error: str


class KubeletClient:
    def __init__(self, registration_socket: Path) -> None:
        self.registration_socket = registration_socket
        self._reg_channel = grpc.insecure_channel(f"unix:{registration_socket}")
        self._registration = pluginregistration_v1_pb2_grpc.RegistrationStub(self._reg_channel)
        self._dra_channel: grpc.Channel | None = None
        self.info: pluginregistration_v1_pb2.PluginInfo | None = None
        self.service = ""

    def get_info(self) -> pluginregistration_v1_pb2.PluginInfo:
        info: pluginregistration_v1_pb2.PluginInfo = self._registration.GetInfo(
            pluginregistration_v1_pb2.InfoRequest(), timeout=GET_INFO_TIMEOUT
        )
        return info

    def notify(self, registered: bool, error: str = "") -> None:
        self._registration.NotifyRegistrationStatus(
            pluginregistration_v1_pb2.RegistrationStatus(plugin_registered=registered, error=error),
            timeout=NOTIFY_TIMEOUT,
        )

    def register(self, kubelet_supported: Sequence[str] = KUBELET_SUPPORTED) -> str:
        """Register like the kubelet; return the chosen service version."""
        info = self.get_info()
        problem = None
        chosen = next((v for v in info.supported_versions if v in kubelet_supported), None)
        if info.type != "DRAPlugin":
            problem = f"no handler registered for plugin type: {info.type}"
        elif chosen is None:
            problem = (
                f"none of services supported by the plugin ({list(info.supported_versions)}) "
                f"are supported by the kubelet ({list(kubelet_supported)})"
            )
        if problem is not None or chosen is None:
            self.notify(False, problem or "")
            raise ProtocolError(problem)
        endpoint = info.endpoint or str(self.registration_socket)
        channel = grpc.insecure_channel(f"unix:{endpoint}")
        try:
            grpc.channel_ready_future(channel).result(timeout=NOTIFY_TIMEOUT)
        except grpc.FutureTimeoutError as exc:
            channel.close()
            self.notify(False, f"cannot connect to {endpoint}")
            raise ProtocolError(f"cannot connect to {endpoint}") from exc
        self._dra_channel = channel
        self.info = info
        self.service = chosen
        self.notify(True)
        return chosen

    def prepare(self, claims: Sequence[Claim]) -> dict[str, PrepareResult]:
        pb, pb_grpc = self._api()
        request = pb.NodePrepareResourcesRequest(claims=[_claim(pb, c) for c in claims])
        response = pb_grpc.DRAPluginStub(self._dra_channel).NodePrepareResources(
            request, timeout=CALL_TIMEOUT
        )
        _check_keys(claims, response.claims.keys())
        has_share_id = pb is dra_v1_pb2  # v1beta1 has no share_id field
        return {
            uid: PrepareResult(
                devices=tuple(
                    PreparedDevice(
                        request_names=tuple(d.request_names),
                        pool_name=d.pool_name,
                        device_name=d.device_name,
                        cdi_device_ids=tuple(d.cdi_device_ids),
                        share_id=d.share_id if has_share_id and d.HasField("share_id") else None,
                    )
                    for d in entry.devices
                ),
                error=entry.error,
            )
            for uid, entry in response.claims.items()
        }

    def unprepare(self, claims: Sequence[Claim]) -> dict[str, str]:
        """Unprepare claims; return uid -> error ("" for success)."""
        pb, pb_grpc = self._api()
        request = pb.NodeUnprepareResourcesRequest(claims=[_claim(pb, c) for c in claims])
        response = pb_grpc.DRAPluginStub(self._dra_channel).NodeUnprepareResources(
            request, timeout=CALL_TIMEOUT
        )
        _check_keys(claims, response.claims.keys())
        return {uid: entry.error for uid, entry in response.claims.items()}

    def close(self) -> None:
        self._reg_channel.close()
        if self._dra_channel is not None:
            self._dra_channel.close()

    def _api(self) -> tuple[ModuleType, ModuleType]:
        if self._dra_channel is None:
            raise ProtocolError("not registered")
        return _MODULES[self.service]


def _claim(pb: ModuleType, claim: Claim) -> Any:
    return pb.Claim(namespace=claim.namespace, name=claim.name, uid=claim.uid)


def _check_keys(claims: Sequence[Claim], answered: Iterable[str]) -> None:
    requested = {c.uid for c in claims}
    got = set(answered)
    if got - requested:
        raise ProtocolError(f"response has claims that were not requested: {got - requested}")
    if requested - got:
        raise ProtocolError(f"skipped {len(requested - got)} ResourceClaims")
