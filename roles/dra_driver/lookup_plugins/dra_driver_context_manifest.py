"""Lookup dra_driver_context_manifest: what the driver image is built from,
as one string whose hash is the image tag.

One line per regular file under the build context (relative path, mode,
SHA-1 of its content), sorted; files whose relative path matches the
regular expression `ignored` (caches, build leftovers) are left out, and
not read. A lookup, not ansible.builtin.find: it runs in the controller's
own process (the build context is on the controller), where a module run
costs a new Python process per task, and it hashes only the files that
count. The lines are those the find-based manifest had (same tags for the
same sources).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

DOCUMENTATION = r"""
name: dra_driver_context_manifest
short_description: Manifest of a Docker build context (path, mode, SHA-1 per file)
description:
  - One line per regular file under each given directory, sorted.
  - Symbolic links are not followed.
options:
  _terms:
    description: Build context directories on the controller.
    required: true
  ignored:
    description: >-
      Regular expression; files whose path relative to the directory matches it are
      left out.
    type: str
    default: "(?!)"
"""

_CHUNK = 1 << 20


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()  # noqa: S324 - a content fingerprint, as find's checksum was
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def context_manifest(source_dir: str, ignored: str) -> str:
    """The manifest of source_dir (see the module's docstring)."""
    root = Path(source_dir)
    if not root.is_dir():
        raise AnsibleLookupError(f"build context {source_dir} is not a directory")
    skip = re.compile(ignored)
    lines = []
    for directory, _subdirs, names in os.walk(root):
        for name in names:
            path = Path(directory) / name
            relative = path.relative_to(root).as_posix()
            if skip.search(relative):
                continue
            info = path.lstat()
            if not stat.S_ISREG(info.st_mode):
                continue
            lines.append(f"{relative} {stat.S_IMODE(info.st_mode):04o} {_sha1(path)};")
    return "".join(sorted(lines))


class LookupModule(LookupBase):  # type: ignore[misc]
    def run(
        self, terms: list[Any], variables: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[str]:
        self.set_options(var_options=variables, direct=kwargs)
        ignored = str(self.get_option("ignored"))
        return [context_manifest(str(term), ignored) for term in terms]
