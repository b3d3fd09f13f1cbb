"""The ELF closure of an extension: does every program and library find what it needs?

Used by `pants_sysext.sandbox.validate`, in a sandbox with the system Python: standard library
plus pyelftools (pure Python, shipped into the sandbox next to `pants_sysext/`).

For every regular file of the staged tree that is an ELF object:

- its machine, class and byte order must match the image's systemd ARCHITECTURE;
- its program interpreter (PT_INTERP) must exist in the image, a stacked extension or the base;
- every DT_NEEDED must be found the way ld.so finds it at run time on the merged system:
  through DT_RUNPATH (or DT_RPATH) with `$ORIGIN`/`$LIB`/`$PLATFORM` expanded, then the standard
  library directories, following symlinks across the image and the layers below it; failing
  that, it must be a soname the base or a stacked extension PROVIDES (Portage's own record,
  whose CONTENTS may not list every library), or be allowed explicitly.

Without a base image, nothing is known about the target OS but that it has a C library: the
GNU C library's sonames and loaders are assumed (`assumed_c_library`), and the caller reports
other unresolved sonames as warnings (`format_unverified`) rather than errors.

The base's `/etc/ld.so.conf` and `ld.so.cache` are not consulted: an extension cannot add
directories to them, and the cache of the base does not know the extension's libraries.

ELF files are read straight from the staged tar (uncompressed, so every member is seekable);
pyelftools reads only the headers, the program headers and the dynamic segment.
"""

from __future__ import annotations

import fnmatch
import posixpath
import tarfile
from collections import deque
from dataclasses import dataclass, field
from typing import IO, Callable, Iterable, Iterator, Mapping, Sequence

from elftools.elf.elffile import ELFFile

from pants_sysext.formats.vdb import InstalledPackage
from pants_sysext.sandbox.manifest import DIR, FILE, HARDLINK, SYMLINK, ManifestEntry, read_manifest

ELF_MAGIC = b"\x7fELF"
OTHER = "other"  # a device, FIFO or other non-directory, non-symlink path of a lower layer

# systemd's ARCHITECTURE values (os-release(5)) → (e_machine, ELF class, little endian).
ARCHITECTURES: dict[str, tuple[str, int, bool]] = {
    "x86-64": ("EM_X86_64", 64, True),
    "x86": ("EM_386", 32, True),
    "arm64": ("EM_AARCH64", 64, True),
    "arm64-be": ("EM_AARCH64", 64, False),
    "arm": ("EM_ARM", 32, True),
    "arm-be": ("EM_ARM", 32, False),
    "riscv64": ("EM_RISCV", 64, True),
    "riscv32": ("EM_RISCV", 32, True),
    "ppc64-le": ("EM_PPC64", 64, True),
    "ppc64": ("EM_PPC64", 64, False),
    "ppc": ("EM_PPC", 32, False),
    "ppc-le": ("EM_PPC", 32, True),
    "s390x": ("EM_S390", 64, False),
    "s390": ("EM_S390", 32, False),
    "loongarch64": ("EM_LOONGARCH", 64, True),
    "alpha": ("EM_ALPHA", 64, True),
    "ia64": ("EM_IA_64", 64, True),
    "sparc64": ("EM_SPARCV9", 64, False),
}

# Code for other processors that packages ship as data (BPF programs, GPU kernels).
_NOT_CPU_CODE = frozenset({"EM_BPF", "EM_AMDGPU", "EM_CUDA"})
# Paths whose ELF files are never loaded by ld.so for this CPU: firmware for devices, and
# detached debug information.
_NOT_LOADED_PREFIXES = ("usr/lib/firmware/", "lib/firmware/", "usr/lib/debug/")

# Portage's multilib category prefixes (portage.dep.soname.multilib_category).
_CATEGORY_PREFIX = {
    "EM_386": "x86", "EM_X86_64": "x86", "EM_68K": "m68k", "EM_AARCH64": "arm",
    "EM_ARM": "arm", "EM_ALPHA": "alpha", "EM_IA_64": "ia64", "EM_LOONGARCH": "loong",
    "EM_MIPS": "mips", "EM_PARISC": "hppa", "EM_PPC": "ppc", "EM_PPC64": "ppc",
    "EM_RISCV": "riscv", "EM_S390": "s390", "EM_SH": "sh", "EM_SPARC": "sparc",
    "EM_SPARC32PLUS": "sparc", "EM_SPARCV9": "sparc",
}
_EF_RISCV_RVC = 0x1
_EF_RISCV_FLOAT_ABI_DOUBLE = 0x4
_LOONG_ABI = {0x1: "lp64s", 0x2: "lp64f", 0x3: "lp64d", 0x5: "ilp32s", 0x6: "ilp32f", 0x7: "ilp32d"}

# Debian-style multiarch directories (usr/lib/<triplet>), by (e_machine, class, little endian).
_TRIPLETS: dict[tuple[str, int, bool], tuple[str, ...]] = {
    ("EM_X86_64", 64, True): ("x86_64-linux-gnu",),
    ("EM_X86_64", 32, True): ("x86_64-linux-gnux32",),
    ("EM_386", 32, True): ("i386-linux-gnu",),
    ("EM_AARCH64", 64, True): ("aarch64-linux-gnu",),
    ("EM_AARCH64", 64, False): ("aarch64_be-linux-gnu",),
    ("EM_ARM", 32, True): ("arm-linux-gnueabihf", "arm-linux-gnueabi"),
    ("EM_RISCV", 64, True): ("riscv64-linux-gnu",),
    ("EM_PPC64", 64, True): ("powerpc64le-linux-gnu",),
    ("EM_PPC64", 64, False): ("powerpc64-linux-gnu",),
    ("EM_PPC", 32, False): ("powerpc-linux-gnu",),
    ("EM_S390", 64, False): ("s390x-linux-gnu",),
    ("EM_LOONGARCH", 64, True): ("loongarch64-linux-gnu",),
}
# What ld.so substitutes for $PLATFORM (AT_PLATFORM), as far as it is fixed per machine.
_PLATFORMS = {
    "EM_X86_64": "x86_64", "EM_386": "i686", "EM_AARCH64": "aarch64", "EM_PPC64": "ppc64le",
    "EM_S390": "s390x", "EM_RISCV": "riscv64", "EM_LOONGARCH": "loongarch64",
}

# The GNU C library's sonames and dynamic loaders: what every glibc-based OS has. Assumed on the
# target OS when no base image is given (nothing else about it is known then).
GLIBC_SONAMES = (
    "libc.so.6", "libm.so.6", "libmvec.so.1", "libpthread.so.0", "libdl.so.2", "librt.so.1",
    "libresolv.so.2", "libutil.so.1", "libanl.so.1", "libBrokenLocale.so.1", "libthread_db.so.1",
    "libc_malloc_debug.so.0", "libnss_dns.so.2", "libnss_files.so.2", "libmemusage.so",
    "libpcprofile.so",
)
GLIBC_LOADERS = (
    "ld-linux-x86-64.so.2", "ld-linux-x32.so.2", "ld-linux.so.2", "ld-linux-aarch64.so.1",
    "ld-linux-aarch64_be.so.1", "ld-linux-armhf.so.3", "ld-linux.so.3", "ld-linux-riscv64-lp64d.so.1",
    "ld-linux-riscv64-lp64.so.1", "ld-linux-riscv32-ilp32d.so.1", "ld64.so.2", "ld64.so.1", "ld.so.1",
    "ld-linux-loongarch-lp64d.so.1",
)
ASSUMED_C_LIBRARY = "the GNU C library (assumed on the target OS: no base image was given)"

_MAX_SYMLINK_HOPS = 40  # as the kernel (MAXSYMLINKS)
_MAX_DYNAMIC_TAGS = 100_000


class ElfReadError(Exception):
    """A file that starts like an ELF file but cannot be read as one."""


# --------------------------------------------------------------------------------------------
# ELF files


@dataclass(frozen=True)
class ElfInfo:
    """What the dynamic loader needs to know about one ELF file."""

    machine: str  # "EM_X86_64", or "EM_<number>" for machines pyelftools does not name
    elfclass: int  # 32 or 64
    little_endian: bool
    e_type: str  # ET_EXEC, ET_DYN, ET_REL, ET_CORE, …
    e_flags: int = 0
    interpreter: str | None = None  # PT_INTERP
    dynamic: bool = False  # has a PT_DYNAMIC segment
    needed: tuple[str, ...] = ()
    rpath: tuple[str, ...] = ()  # DT_RPATH entries (ignored by ld.so when DT_RUNPATH is set)
    runpath: tuple[str, ...] = ()
    soname: str | None = None

    @property
    def category(self) -> str | None:
        """Portage's multilib category (`x86_64`, `arm_32`, `riscv_lp64d`…), or None."""
        prefix = _CATEGORY_PREFIX.get(self.machine)
        if prefix is None:
            return None
        if prefix == "riscv":
            flags = self.e_flags
            base = "lp64" if self.elfclass == 64 else "ilp32"
            if flags == _EF_RISCV_RVC:
                return f"riscv_{base}"
            if flags == _EF_RISCV_RVC | _EF_RISCV_FLOAT_ABI_DOUBLE:
                return f"riscv_{base}d"
            return None
        if prefix == "loong":
            suffix = _LOONG_ABI.get(self.e_flags & 0x7)
            return f"loong_{suffix}" if suffix else None
        if prefix == "mips":
            return None  # the MIPS ABIs need more flags than this reader keeps
        if self.machine == "EM_X86_64" and self.elfclass == 32:
            return "x86_x32"
        return f"{prefix}_{self.elfclass}"

    @property
    def is_program(self) -> bool:
        """A program started by the kernel through an interpreter (not a library)."""
        return self.interpreter is not None or self.e_type == "ET_EXEC"

    def compatible_with(self, other: "ElfInfo") -> bool:
        """Could ld.so load `other` into a process of this object?"""
        return (self.machine, self.elfclass, self.little_endian) == (
            other.machine,
            other.elfclass,
            other.little_endian,
        )

    def describe(self) -> str:
        return describe_machine(self.machine, self.elfclass, self.little_endian)


def describe_machine(machine: str, elfclass: int, little_endian: bool) -> str:
    names = [a for a, spec in ARCHITECTURES.items() if spec == (machine, elfclass, little_endian)]
    detail = f"{machine}, {elfclass}-bit, {'little' if little_endian else 'big'}-endian"
    return f"{names[0]} ({detail})" if names else detail


def read_elf(stream: IO[bytes]) -> ElfInfo:
    """Read the headers and the dynamic segment of a seekable ELF file."""
    try:
        elf = ELFFile(stream)
        header = elf.header
        machine = header["e_machine"]
        if not isinstance(machine, str):
            machine = f"EM_{machine}"
        e_type = header["e_type"]
        if not isinstance(e_type, str):
            e_type = f"ET_{e_type}"
        interpreter = None
        dynamic = False
        needed: list[str] = []
        rpath: list[str] = []
        runpath: list[str] = []
        soname = None
        for segment in elf.iter_segments():
            p_type = segment["p_type"]
            if p_type == "PT_INTERP":
                interpreter = segment.get_interp_name()
            elif p_type == "PT_DYNAMIC" and not dynamic:
                dynamic = True
                limit = min(_MAX_DYNAMIC_TAGS, segment["p_filesz"] // max(1, elf.structs.Elf_Dyn.sizeof()) + 1)
                for count, tag in enumerate(segment.iter_tags()):
                    if count > limit:
                        raise ElfReadError("the dynamic segment has no DT_NULL terminator")
                    kind = tag.entry.d_tag
                    if kind == "DT_NEEDED":
                        needed.append(tag.needed)
                    elif kind == "DT_RPATH":
                        rpath.extend(tag.rpath.split(":"))
                    elif kind == "DT_RUNPATH":
                        runpath.extend(tag.runpath.split(":"))
                    elif kind == "DT_SONAME":
                        soname = tag.soname
        return ElfInfo(
            machine=machine,
            elfclass=elf.elfclass,
            little_endian=elf.little_endian,
            e_type=e_type,
            e_flags=int(header["e_flags"]),
            interpreter=interpreter,
            dynamic=dynamic,
            needed=tuple(needed),
            rpath=tuple(rpath),
            runpath=tuple(runpath),
            soname=soname,
        )
    except ElfReadError:
        raise
    except Exception as e:  # pyelftools raises many kinds of errors on malformed input
        raise ElfReadError(f"{type(e).__name__}: {e}") from e


# --------------------------------------------------------------------------------------------
# The staged tree and the layers below it


@dataclass(frozen=True)
class Node:
    """One path of a layer: its kind, symlink target and owning package."""

    kind: str  # dir | file | symlink | other
    target: str | None = None
    owner: str = ""
    md5: str | None = None  # files of the base: the MD5 its CONTENTS records


@dataclass(frozen=True)
class StagedTree:
    """An extension's staged tree: `staged.tar` plus its `manifest.jsonl` (in tree order)."""

    tar_path: str
    entries: Mapping[str, ManifestEntry]

    @classmethod
    def load(cls, tar_path: str, manifest_path: str) -> "StagedTree":
        with open(manifest_path, encoding="utf-8") as f:
            entries = {e.path: e for e in read_manifest(f)}
        return cls(tar_path, entries)

    def package(self, path: str) -> str:
        entry = self.entries.get(path)
        return entry.package if entry is not None and entry.package else "unknown package"

    def nodes(self) -> dict[str, Node]:
        out = {}
        for path, e in self.entries.items():
            kind = {DIR: "dir", FILE: "file", HARDLINK: "file", SYMLINK: "symlink"}.get(e.type, OTHER)
            out[path] = Node(kind, e.linkname if e.type == SYMLINK else None, e.package)
        return out

    def members(self) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
        """Every tar member, streamed (the tar keeps no list of members)."""
        with tarfile.open(self.tar_path, "r:", encoding="utf-8") as tar:
            while True:
                member = tar.next()
                if member is None:
                    break
                tar.members.clear()
                yield tar, member


def _normalize(path: str) -> str:
    return path.strip("/")


def parse_contents_line(line: str) -> tuple[str, Node] | None:
    """A CONTENTS line → (relative path, node); None for lines that are not understood.

    `dir PATH`, `obj PATH MD5 MTIME`, `sym PATH -> TARGET MTIME`, `dev PATH`, `fif PATH`.
    Paths may contain spaces, so the trailing fields are split off from the right.
    """
    kind, _, rest = line.partition(" ")
    if not rest:
        return None
    if kind == "dir":
        return _normalize(rest), Node("dir")
    if kind == "obj":
        parts = rest.rsplit(" ", 2)
        if len(parts) != 3:
            return None
        return _normalize(parts[0]), Node("file", md5=parts[1].lower())
    if kind == "sym":
        body = rest.rsplit(" ", 1)[0] if " -> " in rest.rsplit(" ", 1)[0] else rest
        path, sep, target = body.partition(" -> ")
        if not sep:
            return None
        return _normalize(path), Node("symlink", target)
    if kind in ("dev", "fif"):
        return _normalize(rest), Node(OTHER)
    return None


@dataclass(frozen=True)
class SonameIndex:
    """Sonames something provides, by Portage multilib category ("" = any category)."""

    by_soname: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, provides: Iterable[str]) -> "SonameIndex":
        """PROVIDES values: `x86_64: libc.so.6 libm.so.6 x86_32: libc.so.6`; bare sonames too."""
        found: dict[str, set[str]] = {}
        for text in provides:
            category = ""
            for token in text.split():
                if token.endswith(":"):
                    category = token[:-1]
                else:
                    found.setdefault(token, set()).add(category)
        return cls({k: frozenset(v) for k, v in found.items()})

    def merged(self, other: "SonameIndex") -> "SonameIndex":
        out = {k: set(v) for k, v in self.by_soname.items()}
        for k, v in other.by_soname.items():
            out.setdefault(k, set()).update(v)
        return SonameIndex({k: frozenset(v) for k, v in out.items()})

    def provides(self, soname: str, category: str | None) -> bool:
        return any(_category_matches(c, category) for c in self.by_soname.get(soname, ()))


def _category_matches(provided: str, wanted: str | None) -> bool:
    """Tolerant: a missing category matches anything; otherwise same family and bitness."""
    if not provided or not wanted or provided == wanted:
        return True
    p_prefix, _, p_suffix = provided.partition("_")
    w_prefix, _, w_suffix = wanted.partition("_")
    if p_prefix not in _CATEGORY_PREFIX.values() or w_prefix not in _CATEGORY_PREFIX.values():
        return True  # a naming this reader does not know: do not guess a mismatch
    if p_prefix != w_prefix or "x32" in (p_suffix, w_suffix):
        return False
    return ("64" in p_suffix) == ("64" in w_suffix)


@dataclass(frozen=True)
class LowerLayer:
    """What an extension is merged onto: the base OS, or a stacked extension."""

    description: str  # "the base (Flatcar …)", "the stacked extension extensions/x"
    nodes: Mapping[str, Node]
    sonames: SonameIndex

    @classmethod
    def from_packages(cls, description: str, packages: Iterable[InstalledPackage]) -> "LowerLayer":
        nodes: dict[str, Node] = {}
        provides = []
        for pkg in packages:
            provides.append(pkg.provides)
            for line in pkg.contents:
                parsed = parse_contents_line(line)
                if parsed is None:
                    continue
                path, node = parsed
                if path and path not in nodes:
                    nodes[path] = Node(node.kind, node.target, pkg.cpv, node.md5)
        return cls(description, nodes, SonameIndex.parse(provides))

    @classmethod
    def from_stacked(cls, name: str, provides: Iterable[str], files: Iterable[str]) -> "LowerLayer":
        nodes: dict[str, Node] = {}
        for f in files:
            path = _normalize(f)
            if path:
                nodes[path] = Node("file", owner=name)
                parts = path.split("/")
                for i in range(1, len(parts)):
                    nodes.setdefault("/".join(parts[:i]), Node("dir", owner=name))
        return cls(f"the stacked extension {name}", nodes, SonameIndex.parse(provides))


def assumed_c_library() -> LowerLayer:
    """What an extension may count on without a base image: the GNU C library's sonames."""
    return LowerLayer(ASSUMED_C_LIBRARY, {}, SonameIndex.parse(GLIBC_SONAMES + GLIBC_LOADERS))


@dataclass(frozen=True)
class Resolved:
    path: str  # the final path, relative, symlinks resolved
    node: Node
    layer: int  # 0: the extension's tree; 1…: the lower layers in order


class MergedView:
    """The file system as it looks once the extension is merged: the tree over its layers.

    A path is looked up in the tree first, then in each lower layer; symlinks are followed
    (relative ones from their directory, absolute ones from the root) wherever they are.
    """

    def __init__(self, layers: Sequence[Mapping[str, Node]]) -> None:
        self._layers = list(layers)

    def lookup(self, path: str) -> tuple[Node, int] | None:
        if path == "":
            return Node("dir"), 0
        for index, layer in enumerate(self._layers):
            node = layer.get(path)
            if node is not None:
                return node, index
        return None

    def resolve(self, path: str) -> Resolved | None:
        """Follow symlinks to the final path; None if a component is missing or loops."""
        pending = deque(path.split("/"))
        current: list[str] = []
        hops = 0
        node, layer = Node("dir"), 0
        while pending:
            part = pending.popleft()
            if part in ("", "."):
                continue
            if part == "..":
                if current:
                    current.pop()
                node, layer = Node("dir"), 0
                continue
            candidate = "/".join(current + [part])
            found = self.lookup(candidate)
            if found is None:
                return None
            node, layer = found
            if node.kind == "symlink":
                hops += 1
                if hops > _MAX_SYMLINK_HOPS or node.target is None:
                    return None
                target = node.target
                if target.startswith("/"):
                    current = []
                pending.extendleft(reversed(target.split("/")))
                node = Node("dir")
                continue
            if pending and any(p not in ("", ".") for p in pending) and node.kind != "dir":
                return None
            current.append(part)
        return Resolved("/".join(current), node, layer)


# --------------------------------------------------------------------------------------------
# The check


@dataclass(frozen=True)
class ElfProblem:
    kind: str  # architecture | interpreter | missing | corrupt
    path: str  # relative to the image root
    package: str
    detail: str  # one line, without the path and package
    missing: tuple[str, ...] = ()
    loaded_by: tuple[str, ...] = ()  # "/usr/bin/jq (app-misc/jq-1.6-r3) via libjq.so.1"
    search_path: str = ""  # "RUNPATH $ORIGIN/../lib", when the file has one

    @property
    def where(self) -> str:
        return f"/{self.path} ({self.package})"


@dataclass(frozen=True)
class ElfClosure:
    problems: tuple[ElfProblem, ...]
    elf_files: int
    allowed: tuple[str, ...]  # "/path: soname (allowed by ENTRY)" for every allowed miss
    unused_allow: tuple[str, ...]  # allow entries that matched nothing


def scan_elf_files(
    tree: StagedTree, visit: Callable[[tarfile.TarInfo], None] | None = None
) -> tuple[dict[str, ElfInfo], dict[str, str]]:
    """(path → ElfInfo, path → error) for every ELF regular file (hard links included).

    `visit` sees every tar member on the way, so callers need no second pass over the tar.
    """
    infos: dict[str, ElfInfo] = {}
    corrupt: dict[str, str] = {}
    hardlinks: list[tuple[str, str]] = []
    for tar, member in tree.members():
        if visit is not None:
            visit(member)
        if member.islnk():
            hardlinks.append((member.name, member.linkname))
            continue
        if not member.isreg() or member.size < 4:
            continue
        stream = tar.extractfile(member)
        if stream is None:
            continue
        if stream.read(4) != ELF_MAGIC:
            continue
        stream.seek(0)
        try:
            infos[member.name] = read_elf(stream)
        except ElfReadError as e:
            corrupt[member.name] = str(e)
    for path, target in hardlinks:
        if target in infos:
            infos[path] = infos[target]
        elif target in corrupt:
            corrupt[path] = corrupt[target]
    return infos, corrupt


def _library_dirs(info: ElfInfo) -> list[str]:
    triplets = _TRIPLETS.get((info.machine, info.elfclass, info.little_endian), ())
    multiarch = [d for t in triplets for d in (f"lib/{t}", f"usr/lib/{t}")]
    if info.elfclass == 64:
        return ["lib64", "usr/lib64", *multiarch, "lib", "usr/lib", "usr/local/lib64", "usr/local/lib"]
    return ["lib", "usr/lib", *multiarch, "lib32", "usr/lib32", "usr/local/lib"]


def _expand_search_path(entries: Sequence[str], origin: str, info: ElfInfo) -> list[str]:
    """RPATH/RUNPATH entries → absolute directories (relative to the image root, no "/")."""
    out: list[str] = []
    libs = ("lib64", "lib") if info.elfclass == 64 else ("lib", "lib64")
    platform = _PLATFORMS.get(info.machine)
    for entry in entries:
        if not entry:
            continue
        variants = [entry.replace("${ORIGIN}", "$ORIGIN").replace("$ORIGIN", "/" + origin)]
        if any("$LIB" in v or "${LIB}" in v for v in variants):
            variants = [v.replace("${LIB}", lib).replace("$LIB", lib) for v in variants for lib in libs]
        if any("PLATFORM" in v for v in variants):
            if platform is None:
                continue
            variants = [v.replace("${PLATFORM}", platform).replace("$PLATFORM", platform) for v in variants]
        for v in variants:
            if v.startswith("/") and "$" not in v:  # relative entries depend on the cwd
                out.append(v.lstrip("/"))
    return out


def _allow_aliases(allow: Sequence[str], view: MergedView) -> dict[str, str]:
    """`/path:soname` entries whose path is a symlink in the tree → the file it resolves to."""
    out = {}
    for entry in allow:
        where = entry.rpartition(":")[0].lstrip("/")
        if where and not any(c in where for c in "*?["):
            resolved = view.resolve(where)
            if resolved is not None and resolved.layer == 0:
                out[entry] = resolved.path
    return out


def _allow_match(allow: Sequence[str], aliases: Mapping[str, str], path: str, soname: str) -> str | None:
    for entry in allow:
        if ":" in entry:
            where, _, name = entry.rpartition(":")
            if not fnmatch.fnmatchcase(soname, name):
                continue
            if fnmatch.fnmatchcase(path, where.lstrip("/")) or aliases.get(entry) == path:
                return entry
        elif fnmatch.fnmatchcase(soname, entry):
            return entry
    return None


def check_elf_closure(
    tree: StagedTree,
    *,
    architecture: str | None,
    lower: Sequence[LowerLayer] = (),
    allow: Sequence[str] = (),
    scanned: tuple[dict[str, ElfInfo], dict[str, str]] | None = None,
) -> ElfClosure:
    """Check every ELF file of `tree` (see the module docstring).

    lower: the layers the extension is merged onto, topmost first (stacked extensions, then
    the base). allow: sonames (`libfoo.so.1`) or `/path:soname` entries (fnmatch patterns)
    that may stay unresolved.
    """
    infos, corrupt = scanned if scanned is not None else scan_elf_files(tree)
    expected = ARCHITECTURES.get(architecture or "")
    view = MergedView([tree.nodes(), *(layer.nodes for layer in lower)])
    sonames = SonameIndex()
    for layer in lower:
        sonames = sonames.merged(layer.sonames)
    aliases = _allow_aliases(allow, view)

    problems: list[ElfProblem] = []
    for path, error in sorted(corrupt.items()):
        problems.append(ElfProblem("corrupt", path, tree.package(path), error))

    allowed: list[str] = []
    used_allow: set[str] = set()
    edges: dict[str, list[tuple[str, str]]] = {}  # path → [(soname, tree path)]
    missing_of: dict[str, tuple[str, ...]] = {}
    for path in sorted(infos):
        info = infos[path]
        if path.startswith(_NOT_LOADED_PREFIXES) or info.machine in _NOT_CPU_CODE:
            continue
        if expected is not None and (info.machine, info.elfclass, info.little_endian) != expected:
            problems.append(
                ElfProblem(
                    "architecture",
                    path,
                    tree.package(path),
                    f"is built for {info.describe()}, but the image is for "
                    f"{describe_machine(*expected)}",
                )
            )
            continue  # ld.so would not load it at all: its dependencies do not matter

        if info.interpreter is not None and not _interpreter_found(info, view, sonames):
            problems.append(
                ElfProblem(
                    "interpreter",
                    path,
                    tree.package(path),
                    f"asks for the program interpreter {info.interpreter}, which "
                    + ("neither the image nor what it is merged onto has" if lower else
                       "the image does not have"),
                )
            )

        if not info.dynamic or not info.needed:
            continue
        origin = posixpath.dirname(path)
        search = _expand_search_path(info.runpath or info.rpath, origin, info)
        search += _library_dirs(info)
        missing = []
        for soname in info.needed:
            target = _find_library(soname, search, info, view, infos)
            if target is not None:
                if target:
                    edges.setdefault(path, []).append((soname, target))
                continue
            if "/" not in soname and sonames.provides(soname, info.category):
                continue
            entry = _allow_match(allow, aliases, path, soname)
            if entry is not None:
                used_allow.add(entry)
                allowed.append(f"/{path}: {soname} (allowed by {entry!r})")
                continue
            missing.append(soname)
        if missing:
            missing_of[path] = tuple(missing)

    loaded_by = _loaded_by(infos, edges, missing_of, tree)
    for path, missing in missing_of.items():
        info = infos[path]
        search_path = ""
        if info.runpath or info.rpath:
            kind = "RUNPATH" if info.runpath else "RPATH"
            search_path = f"{kind} {':'.join(info.runpath or info.rpath)}"
        problems.append(
            ElfProblem(
                "missing",
                path,
                tree.package(path),
                f"needs {', '.join(missing)}",
                missing=missing,
                loaded_by=tuple(loaded_by.get(path, ())),
                search_path=search_path,
            )
        )
    return ElfClosure(
        problems=tuple(problems),
        elf_files=len(infos) + len(corrupt),
        allowed=tuple(allowed),
        unused_allow=tuple(a for a in allow if a not in used_allow),
    )


def _interpreter_found(info: ElfInfo, view: MergedView, sonames: SonameIndex) -> bool:
    resolved = view.resolve(info.interpreter or "")
    if resolved is not None and resolved.node.kind in ("file", OTHER):
        return True
    # A base whose CONTENTS are not complete still names its loader in PROVIDES.
    return sonames.provides(posixpath.basename(info.interpreter or ""), info.category)


def _find_library(
    soname: str,
    search: Sequence[str],
    info: ElfInfo,
    view: MergedView,
    infos: Mapping[str, ElfInfo],
) -> str | None:
    """The path ld.so would load for `soname`: a tree path, "" for a lower layer, or None."""
    if "/" in soname:  # a path: used as is (relative ones depend on the working directory)
        candidates = [soname.lstrip("/")] if soname.startswith("/") else []
    else:
        candidates = [f"{d}/{soname}" for d in search]
    for candidate in candidates:
        resolved = view.resolve(candidate)
        if resolved is None or resolved.node.kind not in ("file", OTHER):
            continue
        if resolved.layer != 0:
            return ""
        other = infos.get(resolved.path)
        if other is None or not info.compatible_with(other):
            continue  # not an ELF file for this machine: ld.so skips it and searches on
        return resolved.path
    return None


def _loaded_by(
    infos: Mapping[str, ElfInfo],
    edges: Mapping[str, list[tuple[str, str]]],
    missing_of: Mapping[str, tuple[str, ...]],
    tree: StagedTree,
) -> dict[str, list[str]]:
    """For each library with missing dependencies: the programs of the tree that load it."""
    out: dict[str, list[str]] = {}
    if not missing_of:
        return out
    for program in sorted(p for p, i in infos.items() if i.is_program):
        # Breadth first, so the chain shown is the shortest.
        via: dict[str, tuple[str, ...]] = {program: ()}
        queue = deque([program])
        while queue:
            current = queue.popleft()
            for soname, target in edges.get(current, ()):
                if target not in via:
                    via[target] = via[current] + (soname,)
                    queue.append(target)
        for lib, chain in via.items():
            if lib != program and lib in missing_of:
                out.setdefault(lib, []).append(
                    f"/{program} ({tree.package(program)}) via {' → '.join(chain)}"
                )
    return out


# --------------------------------------------------------------------------------------------
# Messages


def format_unverified(problems: Sequence[ElfProblem]) -> list[str]:
    """Missing libraries as one-line warnings, for an image without a base image.

    Without a base nothing is known about the target OS beyond the C library, so a library
    the image does not ship may well be there: worth saying, not worth failing for.
    """
    out = []
    for p in problems:
        if p.kind != "missing":
            continue
        them = "it" if len(p.missing) == 1 else "them"
        note = f" (searched its {p.search_path} too)" if p.search_path else ""
        loaded = f", loaded by {'; '.join(p.loaded_by)}" if p.loaded_by else ""
        out.append(
            f"{p.where} needs {', '.join(p.missing)}{note}{loaded}, which the image does not "
            f"have: without a base image it cannot be checked whether the target OS provides "
            f"{them}. Set `base=` on the sysext_image target to check, add the packages that "
            f"provide {them}, or list {them} in `allow_missing_libraries`."
        )
    return out


def format_elf_problems(
    problems: Sequence[ElfProblem], *, architecture: str | None, lower: Sequence[LowerLayer]
) -> list[str]:
    """One message per kind of problem: every file with its package, then the fix."""
    by_kind: dict[str, list[ElfProblem]] = {}
    for p in problems:
        by_kind.setdefault(p.kind, []).append(p)
    messages = []
    below = ", ".join(layer.description for layer in lower) or "nothing (no base image given)"
    base_given = not any(layer.description == ASSUMED_C_LIBRARY for layer in lower)

    if "corrupt" in by_kind:
        lines = [f"  {p.where}: {p.detail}" for p in by_kind["corrupt"]]
        messages.append(
            "Files start like ELF files but cannot be read as ELF:\n" + "\n".join(lines)
            + "\nThe package is damaged or mislabeled: rebuild it, or leave the file out with "
            "`exclude=` on the sysext_image target."
        )
    if "architecture" in by_kind:
        lines = [f"  {p.where} {p.detail}" for p in by_kind["architecture"]]
        messages.append(
            f"ELF files are built for another architecture than the image ({architecture}):\n"
            + "\n".join(lines)
            + "\nUse packages built for the image's architecture (a binhost for its CHOST), or "
            "set `architecture=` on the sysext_image target to the packages' architecture."
        )
    if "interpreter" in by_kind:
        lines = [f"  {p.where} {p.detail}" for p in by_kind["interpreter"]]
        if base_given:
            fix = (
                f"The image is merged onto: {below}. Build the image on a base that has the "
                "loader (`base=` on the sysext_image target), or add the package that provides it."
            )
        else:
            fix = (
                "No base image was given, so only the GNU C library's standard loaders are "
                "assumed on the target OS. Add the package that provides the loader, or build "
                "the image on a base that has it (`base=` on the sysext_image target)."
            )
        messages.append(
            "Programs cannot start: their program interpreter (the dynamic loader) is missing:\n"
            + "\n".join(lines) + "\n" + fix
        )
    if "missing" in by_kind:
        lines = []
        for p in by_kind["missing"]:
            note = f" (searched its {p.search_path} too)" if p.search_path else ""
            lines.append(f"  {p.where} → {', '.join(p.missing)}{note}")
            if p.loaded_by:
                lines.append(f"      loaded by {'; '.join(p.loaded_by)}")
        examples = sorted({s for p in by_kind["missing"] for s in p.missing})
        allow_example = ", ".join(f'"{s}"' for s in examples[:10]) + (", …" if len(examples) > 10 else "")
        searched = f"{below} (their files and the sonames their packages PROVIDE)"
        messages.append(
            "ELF files need shared libraries that neither the image nor what it is merged onto "
            "provides:\n" + "\n".join(lines)
            + f"\nSearched: the files' RUNPATH/RPATH, the standard library directories of the "
            f"image, and {searched}. Add the packages that provide them to the image, build on "
            "a base that has them (`base=`), stack the image on an extension that has them, "
            "or, if they are found at run time some other way, allow them: "
            f"`allow_missing_libraries=[{allow_example}]` (a soname, or \"/path:soname\")."
        )
    return messages
