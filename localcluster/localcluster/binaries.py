"""The cluster's binaries, cached by version: downloaded where possible, else built.

Building always works where the Go module proxy answers, which is all the
machines this project targets can reach. Each component gets a throw-away Go
module of our own that requires the upstream module at the pinned version;
upstream's local-path `replace` directives (Kubernetes' staging repos, etcd's
sibling modules) are rewritten to the published versions of the same modules,
which is what makes `k8s.io/kubernetes` buildable from outside its repository.
Where the official release sites answer, `auto` downloads their checksummed
binaries instead (releases.py) and builds only what it could not download.

A finished directory is renamed into place in one step, so a directory in the
cache is either complete or absent: an interrupted build or download is simply
redone. A hidden `.origin` file in it says where its binaries came from. Two
processes filling the same directory at once take turns on a lock file (in
`.locks/` of the cache, so the directories that hold results hold nothing else);
the second finds the first one's result and does nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from localcluster.releases import (
    Asset,
    DownloadError,
    ReleaseHosts,
    containerd_assets,
    download_assets,
    etcd_assets,
    go_arch,
    kubernetes_assets,
)
from localcluster.versions import (
    CONTAINERD_VERSION,
    CRI_TOOLS_VERSION,
    ETCD_VERSION,
    KubernetesVersion,
)

GOSRC_DIR = Path(__file__).parent / "gosrc"

KUBERNETES_COMMANDS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
)

_REPLACE_BLOCK = re.compile(r"^replace \($(?P<body>.*?)^\)$", re.MULTILINE | re.DOTALL)
_REPLACE_LINE = re.compile(r"^replace (?P<body>\S+ => \S+)$", re.MULTILINE)
_REQUIRE_BLOCK = re.compile(r"^require \($(?P<body>.*?)^\)$", re.MULTILINE | re.DOTALL)
_REQUIRE_LINE = re.compile(r"^require (?P<module>\S+) \S+$", re.MULTILINE)


class BuildError(RuntimeError):
    """A binary could not be built; the message carries the tail of the Go output."""


def default_cache_dir() -> Path:
    override = os.environ.get("LOCALCLUSTER_CACHE")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dra-localcluster"


@dataclass(frozen=True)
class GoModuleBuild:
    """One upstream Go module to build commands from."""

    name: str  # cache key prefix, e.g. "kubernetes"
    module: str
    version: str
    packages: tuple[str, ...]  # full import paths of the main packages
    ldflags: tuple[str, ...] = ()
    # Version given to upstream's locally-replaced sibling modules.
    replacement_version: str | None = None
    # Go names a binary after its package path's last element, minus a major
    # version suffix; (go's name, our name) pairs fix the ones that need it.
    renames: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"


def kubernetes_build(
    version: KubernetesVersion,
    commands: Sequence[str] = KUBERNETES_COMMANDS,
    name: str = "kubernetes",
) -> GoModuleBuild:
    # Without these the binaries call themselves v0.0.0-master, which the
    # kubelet reports to the API server and kubectl prints as a version skew.
    variables = {
        "gitVersion": version.tag,
        "gitMajor": str(version.major),
        "gitMinor": str(version.minor),
        "gitTreeState": "clean",
    }
    ldflags = tuple(
        f"-X {package}.{name}={value}"
        for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for name, value in variables.items()
    )
    return GoModuleBuild(
        name=name,
        module="k8s.io/kubernetes",
        version=version.tag,
        packages=tuple(f"k8s.io/kubernetes/cmd/{command}" for command in commands),
        ldflags=ldflags,
        replacement_version=version.staging_tag,
    )


def kubeadm_build(version: KubernetesVersion) -> GoModuleBuild:
    """kubeadm, which only a kind node needs: its own cache entry, so adding it
    leaves the local cluster's cached `kubernetes-<version>` directory valid."""
    return kubernetes_build(version, commands=("kubeadm",), name="kubeadm")


def crictl_build(version: str = CRI_TOOLS_VERSION) -> GoModuleBuild:
    module = "sigs.k8s.io/cri-tools"
    return GoModuleBuild(
        name="crictl",
        module=module,
        version=version,
        packages=(f"{module}/cmd/crictl",),
        ldflags=(f"-X {module}/pkg/version.Version={version}",),
    )


def etcd_build(version: str = ETCD_VERSION) -> GoModuleBuild:
    # etcd's server module holds the `etcd` main package at its root.
    return GoModuleBuild(
        name="etcd",
        module="go.etcd.io/etcd/server/v3",
        version=version,
        packages=("go.etcd.io/etcd/server/v3",),
        replacement_version=version,
        renames=(("server", "etcd"),),
    )


def containerd_build(version: str = CONTAINERD_VERSION) -> GoModuleBuild:
    module = "github.com/containerd/containerd/v2"
    return GoModuleBuild(
        name="containerd",
        module=module,
        version=version,
        packages=(
            f"{module}/cmd/containerd",
            f"{module}/cmd/containerd-shim-runc-v2",
            f"{module}/cmd/ctr",
        ),
        ldflags=(f"-X {module}/version.Version={version}",),
    )


def required_modules(go_mod: str) -> set[str]:
    modules: set[str] = set()
    for block in _REQUIRE_BLOCK.finditer(go_mod):
        for line in block["body"].splitlines():
            fields = line.split("//")[0].split()
            if len(fields) == 2:
                modules.add(fields[0])
    modules.update(match["module"] for match in _REQUIRE_LINE.finditer(go_mod))
    return modules


def local_replacements(go_mod: str) -> list[str]:
    """Modules that upstream's go.mod replaces with a path inside its own repository."""
    bodies = [block["body"] for block in _REPLACE_BLOCK.finditer(go_mod)]
    bodies.extend(match["body"] for match in _REPLACE_LINE.finditer(go_mod))
    replaced: list[str] = []
    for body in bodies:
        for line in body.splitlines():
            fields = line.split("//")[0].split()
            # "module => ./path" or "module => ../path" (no version on either side)
            if len(fields) == 3 and fields[1] == "=>" and fields[2].startswith((".", "/")):
                replaced.append(fields[0])
    return replaced


def render_go_mod(build: GoModuleBuild, upstream_go_mod: str, go_version: str) -> str:
    """The go.mod of our wrapper module for `build`, given upstream's go.mod text."""
    lines = [
        "// Generated by localcluster: builds upstream commands at a pinned version.",
        "module localcluster.invalid/build",
        "",
        f"go {go_version}",
        "",
        f"require {build.module} {build.version}",
    ]
    required = required_modules(upstream_go_mod)
    # Only modules upstream actually requires: its replace list also names
    # placeholders (etcd's "FORBIDDEN_DEPENDENCY") that must stay unresolved.
    replaced = [module for module in local_replacements(upstream_go_mod) if module in required]
    if replaced and build.replacement_version is None:
        raise BuildError(
            f"{build.module} {build.version} replaces {replaced[0]} with a local path; "
            "no replacement version is known for it"
        )
    if replaced:
        lines.append("")
        lines.append("replace (")
        lines.extend(f"\t{module} => {module} {build.replacement_version}" for module in replaced)
        lines.append(")")
    return "\n".join(lines) + "\n"


def render_tools_go(build: GoModuleBuild) -> str:
    imports = "\n".join(f'\t_ "{package}"' for package in build.packages)
    return f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n"


def _go_environment() -> dict[str, str]:
    env = dict(os.environ)
    # Static binaries that run on any glibc, and never a toolchain download.
    env.update({"CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"})
    return env


def _go_version() -> str:
    output = subprocess.run(
        ["go", "env", "GOVERSION"], check=True, capture_output=True, text=True
    ).stdout.strip()
    match = re.match(r"go(\d+\.\d+(?:\.\d+)?)", output)
    if match is None:
        raise BuildError(f"cannot parse the Go version from {output!r}")
    return match[1]


def _run_go(args: Sequence[str], cwd: Path, log: Callable[[str], None], label: str) -> None:
    """Run a go command, reporting progress every 30 s and the output tail on failure."""
    started = time.monotonic()
    with subprocess.Popen(
        ["go", *args],
        cwd=cwd,
        env=_go_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        if process.stdout is None:  # for the type checker: stdout=PIPE above
            raise BuildError(f"{label}: no output pipe")
        output: list[str] = []
        finished = threading.Event()

        def report_progress() -> None:
            while not finished.wait(30):
                elapsed = time.monotonic() - started
                log(f"  {label}: {len(output)} packages so far, {elapsed / 60:.1f} min")

        reporter = threading.Thread(target=report_progress, daemon=True)
        reporter.start()
        for line in process.stdout:
            output.append(line.rstrip())
        returncode = process.wait()
        finished.set()
    if returncode != 0:
        tail = "\n".join(output[-30:])
        raise BuildError(f"{label} failed (go {' '.join(args[:2])} …):\n{tail}")


@contextlib.contextmanager
def exclusive_lock(lock_file: Path, waiting: Callable[[], None] = lambda: None) -> Iterator[None]:
    """Hold an exclusive flock on `lock_file`, calling `waiting` first if it is taken.

    The kernel drops the lock when its holder exits, however it exits, so a
    killed build never leaves the cache locked.
    """
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waiting()
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_directory(
    target: Path,
    fill: Callable[[Path], str],
    log: Callable[[str], None] = lambda message: None,
    *,
    lock_dir: Path | None = None,
) -> Path:
    """`target` if present; else let `fill` populate a staging directory and move it there.

    `fill` returns a line describing where the binaries came from, kept in `.origin`.
    A lock (`<lock_dir>/<name>.lock`, by default in `.locks/` beside `target`)
    makes concurrent callers take turns: the staging directory is shared by
    name, and a second filler would delete it under the first.
    """
    if target.is_dir():
        return target
    lock_file = (lock_dir or target.parent / ".locks") / f"{target.name}.lock"
    with exclusive_lock(
        lock_file, waiting=lambda: log(f"localcluster: waiting for another build of {target.name}")
    ):
        if target.is_dir():  # the process we waited for has filled it
            return target
        staging = target.with_name(f".{target.name}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            origin = fill(staging)
            (staging / ".origin").write_text(origin + "\n")
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _build_module(
    build: GoModuleBuild, staging: Path, cache: Path, log: Callable[[str], None]
) -> str:
    """Build `build`'s commands into `staging`; returns the origin line."""
    workdir = cache / "src" / build.key
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    started = time.monotonic()
    log(f"localcluster: building {build.module} {build.version} (cached afterwards)")

    download = subprocess.run(
        ["go", "mod", "download", "-json", f"{build.module}@{build.version}"],
        cwd=workdir,
        env=_go_environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    if download.returncode != 0:
        raise BuildError(
            f"cannot download {build.module}@{build.version}: {download.stdout}{download.stderr}"
        )
    upstream_go_mod = Path(json.loads(download.stdout)["GoMod"]).read_text()
    (workdir / "go.mod").write_text(render_go_mod(build, upstream_go_mod, _go_version()))
    (workdir / "tools.go").write_text(render_tools_go(build))
    _run_go(["mod", "tidy"], workdir, log, f"{build.name} go mod tidy")

    ldflags = " ".join(("-s", "-w", *build.ldflags))
    _run_go(
        ["build", "-v", "-trimpath", "-ldflags", ldflags, "-o", f"{staging}/", *build.packages],
        workdir,
        log,
        f"{build.name} go build",
    )
    for built_name, wanted_name in build.renames:
        (staging / built_name).rename(staging / wanted_name)
    shutil.rmtree(workdir, ignore_errors=True)
    log(f"localcluster: built {build.key} in {(time.monotonic() - started) / 60:.1f} min")
    return f"built from {build.module}@{build.version} via the Go module proxy"


def _download(assets: Sequence[Asset], staging: Path, log: Callable[[str], None]) -> str:
    """Download `assets` into `staging`; returns the origin line."""
    started = time.monotonic()
    download_assets(assets, staging, log)
    seconds = time.monotonic() - started
    log(f"localcluster: downloaded {len(assets)} release file(s) in {seconds:.0f}s")
    return "downloaded, SHA-256 verified: " + " ".join(asset.url for asset in assets)


BinarySource = Literal["auto", "download", "build"]
BINARY_SOURCES: tuple[str, ...] = get_args(BinarySource)


def _obtain(
    build: GoModuleBuild,
    assets: Callable[[], Sequence[Asset]],
    source: BinarySource,
    cache: Path,
    log: Callable[[str], None],
) -> Path:
    """The cached directory of `build`, filled from its release or by building it."""

    def fill(staging: Path) -> str:
        if source != "build":
            try:
                return _download(assets(), staging, log)
            except DownloadError as error:
                if source == "download":
                    raise
                log(f"localcluster: no release download ({error}); building instead")
                shutil.rmtree(staging)
                staging.mkdir()
        return _build_module(build, staging, cache, log)

    return _binary_directory(cache, build.key, fill, log)


def ensure_built(
    build: GoModuleBuild,
    cache: Path | None = None,
    log: Callable[[str], None] = lambda message: print(message, file=sys.stderr, flush=True),
) -> Path:
    """The cached directory of `build`'s commands, built from the Go module proxy if missing."""
    cache = cache or default_cache_dir()
    return _binary_directory(
        cache, build.key, lambda staging: _build_module(build, staging, cache, log), log
    )


def _build_pause(cache: Path, log: Callable[[str], None]) -> Path:
    source = GOSRC_DIR / "pause"
    digest = _tree_digest(source)

    def fill(staging: Path) -> str:
        log("localcluster: building the pause binary")
        _run_go(
            ["build", "-trimpath", "-ldflags", "-s -w", "-o", f"{staging}/pause", "."],
            source,
            log,
            "pause go build",
        )
        return f"built from {source}"

    return _binary_directory(cache, f"pause-{digest}", fill, log)


def _binary_directory(
    cache: Path, key: str, fill: Callable[[Path], str], log: Callable[[str], None]
) -> Path:
    """`<cache>/bin/<key>`, filled once; its lock is in `<cache>/.locks`, not in bin/."""
    return cached_directory(cache / "bin" / key, fill, log, lock_dir=cache / ".locks")


def _tree_digest(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(directory).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class Binaries:
    """Where each executable of a cluster lives."""

    kubernetes: Path
    etcd: Path
    containerd: Path
    pause: Path

    def path(self, command: str) -> Path:
        for directory in (self.kubernetes, self.etcd, self.containerd, self.pause):
            candidate = directory / command
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(f"no binary named {command} in the local cluster's cache")

    @property
    def search_path(self) -> str:
        """PATH for components that exec helpers (containerd runs its shim by name)."""
        own = [str(self.containerd), str(self.kubernetes)]
        return os.pathsep.join([*own, os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")])


def ensure_binaries(
    version: KubernetesVersion,
    cache: Path | None = None,
    log: Callable[[str], None] = lambda message: print(message, file=sys.stderr, flush=True),
    source: BinarySource = "auto",
    hosts: ReleaseHosts | None = None,
) -> Binaries:
    """Return the binaries for `version`, obtaining whatever is not cached yet.

    `source`: `build` compiles from the Go module proxy; `download` fetches the
    official releases (from `hosts`, default the release sites or the
    LOCALCLUSTER_*_RELEASES variables) and fails if it cannot; `auto` tries the
    download and builds whatever it could not get.
    """
    if source not in BINARY_SOURCES:
        raise BuildError(f"binary source {source!r} is not one of {', '.join(BINARY_SOURCES)}")
    cache = cache or default_cache_dir()
    hosts = hosts or ReleaseHosts.from_environment()

    def obtain(build: GoModuleBuild, assets: Callable[[], Sequence[Asset]]) -> Path:
        return _obtain(build, assets, source, cache, log)

    return Binaries(
        kubernetes=obtain(
            kubernetes_build(version),
            lambda: kubernetes_assets(version, KUBERNETES_COMMANDS, hosts, go_arch()),
        ),
        etcd=obtain(etcd_build(), lambda: etcd_assets(ETCD_VERSION, hosts, go_arch())),
        containerd=obtain(
            containerd_build(), lambda: containerd_assets(CONTAINERD_VERSION, hosts, go_arch())
        ),
        pause=_build_pause(cache, log),
    )
