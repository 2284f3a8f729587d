#!/usr/bin/env bash
# Build a local Debian bookworm Python base image for the driver's Dockerfile,
# for machines that cannot pull python:3.x-slim. Dev/CI aid; needs root,
# debootstrap and a reachable Debian mirror. About a minute.
#
#   driver_src/tools/make_base_image.sh [IMAGE]   (default local/python-bookworm:3.11)
#   docker build --build-arg BASE_IMAGE=local/python-bookworm:3.11 ... driver_src
set -euo pipefail

image=${1:-local/python-bookworm:3.11}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
rootfs=$(mktemp -d /tmp/python-bookworm.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT

debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" "$mirror" >/dev/null
# Package caches, indexes and documentation are dead weight in an image.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* \
    "$rootfs"/usr/share/info/*
tar -C "$rootfs" -c . | docker import - "$image" >/dev/null
docker image inspect --format '{{.RepoTags}} {{.Size}} bytes' "$image"
