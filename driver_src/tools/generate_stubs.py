"""Generate the committed gRPC/protobuf stubs in dra_file_driver/kubeletapi.

Run from anywhere:  python driver_src/tools/generate_stubs.py
(needs grpcio-tools, a dev dependency; the image itself never runs protoc).

protoc derives Python module paths from the .proto paths, which for all three
APIs would be ``.../api_pb2.py`` under a ``k8s/io/...`` tree. The stubs are
instead flattened into one package under unique names, and the absolute
imports protoc writes are turned into package-relative ones, so the package
works wherever it is installed. The serialized descriptors are not touched:
they keep the upstream .proto file names and packages, which is what the
wire format and the gRPC method paths depend on.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

DRIVER_SRC = Path(__file__).resolve().parent.parent
PROTO_ROOT = DRIVER_SRC.parent / "proto"
DEFAULT_OUT = DRIVER_SRC / "dra_file_driver" / "kubeletapi"
PACKAGE = "dra_file_driver.kubeletapi"

# .proto path (relative to PROTO_ROOT) -> module name inside PACKAGE.
PROTOS = {
    "k8s.io/kubelet/pkg/apis/dra/v1/api.proto": "dra_v1_pb2",
    "k8s.io/kubelet/pkg/apis/dra/v1beta1/api.proto": "dra_v1beta1_pb2",
    "k8s.io/kubelet/pkg/apis/pluginregistration/v1/api.proto": "pluginregistration_v1_pb2",
}
SUFFIXES = (".py", ".pyi", "_grpc.py")
REGENERATE_COMMAND = "python driver_src/tools/generate_stubs.py"


def _rewrite(text: str, proto: str, module: str) -> str:
    """Point protoc's absolute module references at the flattened module."""
    dotted_dir = proto.rsplit("/", 1)[0].replace("/", ".")
    protoc_module = f"{dotted_dir}.api_pb2"
    text = text.replace(f"from {dotted_dir} import api_pb2 as", f"from . import {module} as")
    text = text.replace(f"'{protoc_module}'", f"'{PACKAGE}.{module}'")
    return text.replace(
        f"{proto.rsplit('/', 1)[0]}/api_pb2_grpc.py",
        f"{PACKAGE.replace('.', '/')}/{module}_grpc.py",
    )


def generate(out_dir: Path) -> list[Path]:
    """Write the stubs for every proto into out_dir; return the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"--proto_path={PROTO_ROOT}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *PROTOS,
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed: {' '.join(args)}")
        for proto, module in PROTOS.items():
            # protoc turns every dot of the path into a directory level.
            generated_dir = Path(tmp, *proto.rsplit("/", 1)[0].replace(".", "/").split("/"))
            for suffix in SUFFIXES:
                source = generated_dir / f"api_pb2{suffix}"
                target = out_dir / f"{module}{suffix}"
                target.write_text(_rewrite(source.read_text(), proto, module))
                written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
