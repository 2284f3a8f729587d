"""The kubelet plugin registration service (pluginregistration.Registration)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import grpc

from .kubeletapi import pluginregistration_v1_pb2 as reg_pb2

log = logging.getLogger(__name__)

PLUGIN_TYPE = "DRAPlugin"
# The kubelet picks the first entry it supports, so v1 comes first. These are
# the kubelet's service identifiers, not gRPC service names.
SUPPORTED_VERSIONS = ("v1.DRAPlugin", "v1beta1.DRAPlugin")


class RegistrationServicer:
    """Answers the kubelet's GetInfo from memory: the kubelet allows it one second."""

    def __init__(
        self, driver_name: str, dra_endpoint: Path, on_status: Callable[[bool], None]
    ) -> None:
        self._info = reg_pb2.PluginInfo(
            type=PLUGIN_TYPE,
            name=driver_name,
            endpoint=str(dra_endpoint),
            supported_versions=SUPPORTED_VERSIONS,
        )
        self._on_status = on_status

    def GetInfo(  # noqa: N802 - gRPC method name
        self, request: reg_pb2.InfoRequest, context: grpc.ServicerContext
    ) -> reg_pb2.PluginInfo:
        return self._info

    def NotifyRegistrationStatus(  # noqa: N802 - gRPC method name
        self, request: reg_pb2.RegistrationStatus, context: grpc.ServicerContext
    ) -> reg_pb2.RegistrationStatusResponse:
        if request.plugin_registered:
            log.info("kubelet registered the plugin")
        else:
            # Not fatal: the kubelet retries registration from scratch, and
            # the sockets must stay up for that.
            log.error("kubelet rejected the plugin registration", extra={"error": request.error})
        self._on_status(request.plugin_registered)
        return reg_pb2.RegistrationStatusResponse()
