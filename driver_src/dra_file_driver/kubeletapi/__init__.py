"""Generated protobuf/gRPC stubs of the kubelet APIs (see tools/generate_stubs.py)."""
