"""The pieces of the ELF closure check: CONTENTS lines, sonames by category, path resolution."""

from __future__ import annotations

import io

import pytest

from pants_sysext.sandbox.elf_closure import (
    ElfInfo,
    ElfReadError,
    LowerLayer,
    MergedView,
    Node,
    SonameIndex,
    _expand_search_path,
    parse_contents_line,
    read_elf,
)
from tests.validate.helpers import installed


def test_contents_lines_with_spaces_in_paths() -> None:
    assert parse_contents_line("dir /usr/share/my dir") == ("usr/share/my dir", Node("dir"))
    assert parse_contents_line("obj /usr/share/a b/c d 0123456789ABCDEF0123456789abcdef 1700000000") == (
        "usr/share/a b/c d", Node("file", md5="0123456789abcdef0123456789abcdef")
    )
    assert parse_contents_line("sym /usr/x y -> a b 1700000000") == ("usr/x y", Node("symlink", "a b"))
    assert parse_contents_line("sym /lib64 -> usr/lib64 1") == ("lib64", Node("symlink", "usr/lib64"))
    assert parse_contents_line("fif /usr/share/pipe") == ("usr/share/pipe", Node("other"))
    assert parse_contents_line("obj /usr/bin/x") is None
    assert parse_contents_line("what /usr") is None


def test_lower_layer_from_packages_keeps_owners_and_sonames() -> None:
    layer = LowerLayer.from_packages("the base", [
        installed("sys-libs/glibc-2.36", "x86_64: libc.so.6 x86_32: libc.so.6 libm.so.6", ["dir /usr", "obj /usr/lib64/libc.so.6 00 1"]),
        installed("sys-apps/other-1", "", ["dir /usr", "obj /usr/lib64/libc.so.6 11 1"]),
    ])
    assert layer.nodes["usr/lib64/libc.so.6"] == Node("file", owner="sys-libs/glibc-2.36", md5="00")
    assert layer.sonames.provides("libc.so.6", "x86_64")
    assert layer.sonames.provides("libm.so.6", "x86_32")
    assert not layer.sonames.provides("libm.so.6", "x86_64")


def test_soname_categories_are_matched_tolerantly() -> None:
    index = SonameIndex.parse(["x86_64: liba.so.1", "arm_32: libb.so.1", "libbare.so.1", "weird: libw.so.1"])
    assert index.provides("liba.so.1", "x86_64") and index.provides("liba.so.1", None)
    assert not index.provides("liba.so.1", "x86_32") and not index.provides("liba.so.1", "x86_x32")
    assert not index.provides("liba.so.1", "arm_64")
    assert index.provides("libb.so.1", "arm_32") and not index.provides("libb.so.1", "arm_64")
    assert index.provides("libbare.so.1", "riscv_lp64d")  # no category given: any
    assert index.provides("libw.so.1", "x86_64")  # a category this reader does not know
    assert not index.provides("libnone.so.1", "x86_64")


@pytest.mark.parametrize(
    "machine,elfclass,flags,category",
    [
        ("EM_X86_64", 64, 0, "x86_64"), ("EM_X86_64", 32, 0, "x86_x32"), ("EM_386", 32, 0, "x86_32"),
        ("EM_AARCH64", 64, 0, "arm_64"), ("EM_ARM", 32, 0x5000400, "arm_32"),
        ("EM_RISCV", 64, 0x5, "riscv_lp64d"), ("EM_RISCV", 64, 0x1, "riscv_lp64"),
        ("EM_LOONGARCH", 64, 0x43, "loong_lp64d"), ("EM_PPC64", 64, 2, "ppc_64"), ("EM_MIPS", 32, 0, None),
    ],
)
def test_multilib_category_as_portage_computes_it(machine, elfclass, flags, category) -> None:
    assert ElfInfo(machine, elfclass, True, "ET_DYN", flags).category == category


def test_merged_view_resolution() -> None:
    tree = {
        "usr": Node("dir"), "usr/lib64": Node("dir"),
        "usr/lib64/a": Node("symlink", "b"), "usr/lib64/b": Node("symlink", "/usr/lib64/c"),
        "usr/lib64/c": Node("file"),
        "usr/lib64/loop1": Node("symlink", "loop2"), "usr/lib64/loop2": Node("symlink", "loop1"),
        "usr/lib64/file": Node("file"),
        "usr/lib64/tobase": Node("symlink", "../../lib/x"),
    }
    base = {"lib64": Node("symlink", "usr/lib64"), "lib": Node("dir"), "lib/x": Node("file")}
    view = MergedView([tree, base])
    resolved = view.resolve("lib64/a")
    assert (resolved.path, resolved.node.kind, resolved.layer) == ("usr/lib64/c", "file", 0)
    assert view.resolve("usr/lib64/tobase").path == "lib/x" and view.resolve("usr/lib64/tobase").layer == 1
    assert view.resolve("usr/lib64/loop1") is None
    assert view.resolve("usr/lib64/file/x") is None
    assert view.resolve("usr/lib64/missing") is None
    assert view.resolve("../../usr/lib64/c").path == "usr/lib64/c"
    assert MergedView([tree]).resolve("lib64/a") is None  # without the base's /lib64 symlink


def test_search_path_expansion() -> None:
    info64 = ElfInfo("EM_X86_64", 64, True, "ET_EXEC")
    assert _expand_search_path(
        ["$ORIGIN/../lib", "${ORIGIN}", "/usr/$LIB/x", "relative/dir", "", "/opt/$PLATFORM"],
        "usr/lib/foo/bin", info64,
    ) == ["usr/lib/foo/bin/../lib", "usr/lib/foo/bin", "usr/lib64/x", "usr/lib/x", "opt/x86_64"]
    info32 = ElfInfo("EM_386", 32, True, "ET_EXEC")
    assert _expand_search_path(["/usr/${LIB}"], "usr/bin", info32) == ["usr/lib", "usr/lib64"]


def test_read_elf_refuses_non_elf_and_truncated_input() -> None:
    with pytest.raises(ElfReadError):
        read_elf(io.BytesIO(b"not an ELF file at all, but long enough" * 4))
    with pytest.raises(ElfReadError):
        read_elf(io.BytesIO(b"\x7fELF\x02\x01\x01"))
