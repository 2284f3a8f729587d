#!/usr/bin/env bash
# Build the kubelet plugin of kubernetes-sigs/dra-example-driver, the Go
# driver that benchmarks/prepare_latency.py --go-driver measures side by side
# with ours. By hand only (CI does not run it): it fetches Go modules.
#
#   benchmarks/build_go_driver.sh SOURCE_DIR [OUTPUT_BINARY]
#
# SOURCE_DIR is a checkout or export of dra-example-driver (for instance
# `git --git-dir=<mirror> archive HEAD | tar -x -C SOURCE_DIR`); nothing of
# it belongs in this repository. OUTPUT_BINARY defaults to
# SOURCE_DIR/../bin/dra-example-kubeletplugin. A go.mod that asks for a newer
# Go than the machine's needs GOTOOLCHAIN=go1.27.3 in the environment.
#
# The plugin must speak the API the cluster serves: resource.k8s.io/v1 (our
# localcluster runs Kubernetes 1.34 or later). The check below refuses a
# source whose plugin uses another version.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
    echo "usage: $0 SOURCE_DIR [OUTPUT_BINARY]" >&2
    exit 2
fi
source_dir=$(realpath "$1")
output=$(realpath -m "${2:-$source_dir/../bin/dra-example-kubeletplugin}")
plugin_dir=$source_dir/cmd/dra-example-kubeletplugin
go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}

if [[ ! -f $source_dir/go.mod || ! -d $plugin_dir ]]; then
    echo "$source_dir is not a dra-example-driver source tree (no go.mod or $plugin_dir)" >&2
    exit 1
fi
if ! grep -q '"k8s.io/api/resource/v1"' "$plugin_dir/driver.go"; then
    echo "the plugin in $source_dir does not use resource.k8s.io/v1:" >&2
    grep -h 'k8s.io/api/resource/' "$plugin_dir"/*.go >&2 || true
    exit 1
fi

echo "Go: $("$go" version); go.mod wants $(awk '$1 == "go" {print $2}' "$source_dir/go.mod")"
echo "k8s.io/dynamic-resource-allocation $(awk '$1 == "k8s.io/dynamic-resource-allocation" {print $2}' "$source_dir/go.mod")"
mkdir -p "$(dirname "$output")"
(cd "$source_dir" && "$go" build -o "$output" ./cmd/dra-example-kubeletplugin)
echo "built $output"
