"""The ELF closure check on real ELF files: the jq fixture binaries and tiny programs built here."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.validate.helpers import (
    GLIBC,
    JQ,
    installed,
    base_json,
    glibc_base,
    member_bytes,
    one_error,
    run,
    stage_tree,
    write_package,
)


def test_jq_with_oniguruma_on_a_glibc_base_is_valid(tmp_path, fixture_packages) -> None:
    tree = stage_tree(tmp_path, [fixture_packages["jq"], fixture_packages["onig"]])
    result = run(tree, base=glibc_base(tmp_path))
    assert result.errors == () and result.warnings == ()
    assert result.elf_files == 3


def test_jq_without_oniguruma_names_the_library_the_binary_and_the_soname(tmp_path, fixture_packages) -> None:
    tree = stage_tree(tmp_path, [fixture_packages["jq"]])
    error = one_error(run(tree, base=glibc_base(tmp_path)))
    assert error.startswith("ELF files need shared libraries that neither the image nor")
    # libjq.so.1 is found in the image (through its symlink); libonig.so.5 is not.
    assert f"  /usr/lib64/libjq.so.1.0.4 ({JQ}) → libonig.so.5\n" in error
    assert f"      loaded by /usr/bin/jq ({JQ}) via libjq.so.1\n" in error
    assert "libjq.so.1 " not in error.split("\n", 3)[1]
    assert "the base (Flatcar Container Linux 3815.2.0)" in error
    assert 'allow_missing_libraries=["libonig.so.5"]' in error


@pytest.mark.parametrize(
    "entry", ["libonig.so.5", "libonig.so.*", "/usr/lib64/libjq.so.1.0.4:libonig.so.5",
              "/usr/lib64/libjq.so.1:libonig.so.5", "usr/lib64/*:libonig.so.5"]
)
def test_allow_missing_libraries_lets_it_pass(tmp_path, fixture_packages, entry) -> None:
    tree = stage_tree(tmp_path, [fixture_packages["jq"]])
    result = run(tree, base=glibc_base(tmp_path), allow_missing_libraries=[entry])
    assert result.errors == () and result.warnings == ()
    assert result.allowed == (f"/usr/lib64/libjq.so.1.0.4: libonig.so.5 (allowed by {entry!r})",)


def test_allow_entries_for_other_paths_do_not_apply_and_unused_ones_warn(tmp_path, fixture_packages) -> None:
    tree = stage_tree(tmp_path, [fixture_packages["jq"]])
    result = run(
        tree, base=glibc_base(tmp_path),
        allow_missing_libraries=["/usr/bin/jq:libonig.so.5", "libnothere.so.1"],
    )
    assert "/usr/lib64/libjq.so.1.0.4 (app-misc/jq-1.6-r3) → libonig.so.5" in one_error(result)
    assert result.warnings == (
        "allow_missing_libraries: '/usr/bin/jq:libonig.so.5' matched no missing library; remove it",
        "allow_missing_libraries: 'libnothere.so.1' matched no missing library; remove it",
    )


def test_a_stacked_extension_providing_the_soname_lets_it_pass(tmp_path, fixture_packages) -> None:
    tree = stage_tree(tmp_path, [fixture_packages["jq"]])
    stacked = [{"name": "extensions/oniguruma:oniguruma", "provides": ["x86_64: libonig.so.5"], "files": []}]
    assert run(tree, base=glibc_base(tmp_path), stacked=stacked).errors == ()
    # Its files count too, without PROVIDES.
    stacked = [{"name": "onig", "provides": [], "files": ["usr/lib64/libonig.so.5"]}]
    assert run(tree, base=glibc_base(tmp_path), stacked=stacked).errors == ()
    # A soname of another multilib category does not.
    stacked = [{"name": "onig32", "provides": ["x86_32: libonig.so.5"], "files": []}]
    assert "libonig.so.5" in one_error(run(tree, base=glibc_base(tmp_path), stacked=stacked))


def test_without_a_base_only_the_c_library_is_assumed(tmp_path, fixture_packages) -> None:
    tree = stage_tree(tmp_path, [fixture_packages["jq"], fixture_packages["onig"]])
    assert run(tree) == run(tree, base=glibc_base(tmp_path))  # no errors, no warnings

    # What the image lacks may be on the target OS: a warning, one line, naming what needs it.
    tree = stage_tree(tmp_path, [fixture_packages["jq"]], label="jq-only")
    result = run(tree)
    assert result.errors == ()
    assert result.warnings == (
        f"/usr/lib64/libjq.so.1.0.4 ({JQ}) needs libonig.so.5, loaded by /usr/bin/jq ({JQ}) via "
        "libjq.so.1, which the image does not have: without a base image it cannot be checked "
        "whether the target OS provides it. Set `base=` on the sysext_image target to check, add "
        "the packages that provide it, or list it in `allow_missing_libraries`.",
    )
    assert run(tree, allow_missing_libraries=["libonig.so.5"]).warnings == ()


def _with_interpreter(data: bytes, interpreter: bytes) -> bytes:
    old = b"/lib64/ld-linux-x86-64.so.2\0"
    assert data.count(old) == 1 and len(interpreter) < len(old)
    return data.replace(old, interpreter.ljust(len(old), b"\0"))


def test_a_missing_program_interpreter_is_an_error(tmp_path, fixture_packages) -> None:
    jq = member_bytes(fixture_packages["jq"], "usr/bin/jq")
    pkg = write_package(tmp_path, "app-misc/musl-tool-1", [
        ("usr/bin/musl-tool", "file", 0o755, _with_interpreter(jq, b"/lib/ld-musl-x86_64.so.1")),
    ])
    tree = stage_tree(tmp_path, [fixture_packages["jq"], fixture_packages["onig"], pkg])
    # Without a base: not glibc's loader, so not assumed.
    error = one_error(run(tree))
    assert error == (
        "Programs cannot start: their program interpreter (the dynamic loader) is missing:\n"
        "  /usr/bin/musl-tool (app-misc/musl-tool-1) asks for the program interpreter "
        "/lib/ld-musl-x86_64.so.1, which neither the image nor what it is merged onto has\n"
        "No base image was given, so only the GNU C library's standard loaders are assumed on "
        "the target OS. Add the package that provides the loader, or build the image on a base "
        "that has it (`base=` on the sysext_image target)."
    )
    # With a glibc base: not there either.
    error = one_error(run(tree, base=glibc_base(tmp_path)))
    assert "  /usr/bin/musl-tool (app-misc/musl-tool-1) asks for the program interpreter /lib/ld-musl-x86_64.so.1" in error
    assert "The image is merged onto: the base (Flatcar Container Linux 3815.2.0)." in error
    # Shipped in the image: fine.
    loader = write_package(tmp_path, "sys-libs/musl-1", [("usr/lib/ld-musl-x86_64.so.1", "file", 0o755, b"x")])
    tree = stage_tree(tmp_path, [fixture_packages["jq"], fixture_packages["onig"], pkg, loader], label="t2")
    base = glibc_base(tmp_path, installed("sys-apps/merged-1", "", ["sym /lib -> usr/lib 1"]), label="b2")
    assert run(tree, base=base).errors == ()


def test_base_files_count_through_base_symlinks(tmp_path, fixture_packages) -> None:
    """No PROVIDES: the loader and libraries are found as files of the base's CONTENTS."""
    tree = stage_tree(tmp_path, [fixture_packages["jq"], fixture_packages["onig"]])
    libs = ["ld-linux-x86-64.so.2", "libc.so.6", "libm.so.6"]
    base = base_json(tmp_path, [
        installed("sys-apps/baselayout-3", "", ["dir /usr", "sym /lib64 -> usr/lib64 1"]),
        installed(GLIBC, "", ["dir /usr/lib64", *(f"obj /usr/lib64/{n} 0123 1" for n in libs)]),
    ])
    assert run(tree, base=base).errors == ()

    # Without /lib64 -> usr/lib64 the interpreter is not found; the libraries still are.
    base = base_json(tmp_path, [
        installed(GLIBC, "", ["dir /usr/lib64", *(f"obj /usr/lib64/{n} 0123 1" for n in libs)]),
    ], label="base2")
    error = one_error(run(tree, base=base))
    assert "asks for the program interpreter /lib64/ld-linux-x86-64.so.2, which neither the image" in error


def _patched(data: bytes, machine: int) -> bytes:
    return data[:18] + machine.to_bytes(2, "little") + data[20:]


def test_an_elf_for_another_machine_is_an_architecture_error(tmp_path, fixture_packages) -> None:
    jq = member_bytes(fixture_packages["jq"], "usr/bin/jq")
    pkg = write_package(tmp_path, "app-misc/arm-tool-1", [
        ("usr", "dir", 0o755, None),
        ("usr/bin", "dir", 0o755, None),
        ("usr/bin/arm-tool", "file", 0o755, _patched(jq, 183)),  # EM_AARCH64
    ])
    tree = stage_tree(tmp_path, [fixture_packages["jq"], fixture_packages["onig"], pkg])
    error = one_error(run(tree, base=glibc_base(tmp_path)))
    assert error.startswith("ELF files are built for another architecture than the image (x86-64):\n")
    assert (
        "  /usr/bin/arm-tool (app-misc/arm-tool-1) is built for arm64 (EM_AARCH64, 64-bit, "
        "little-endian), but the image is for x86-64 (EM_X86_64, 64-bit, little-endian)\n"
    ) in error
    assert "`architecture=`" in error
    # The same tree for arm64: now jq and the libraries are the foreign ones, and the arm64
    # program finds neither an arm64 loader nor arm64 libraries (glibc's are x86_64 ones).
    arch, interp, missing = run(tree, base=glibc_base(tmp_path), architecture="arm64").errors
    assert "  /usr/bin/jq (app-misc/jq-1.6-r3) is built for x86-64 (EM_X86_64" in arch
    assert "/usr/bin/arm-tool" not in arch
    assert "/usr/bin/arm-tool (app-misc/arm-tool-1) asks for the program interpreter" in interp
    assert "  /usr/bin/arm-tool (app-misc/arm-tool-1) → libjq.so.1, libc.so.6\n" in missing
    # An architecture this check does not know: no architecture check (the closure still is).
    result = run(tree, base=glibc_base(tmp_path), architecture="mips64-le")
    assert not any("another architecture" in e for e in result.errors)
    assert len(result.errors) == 2


def test_a_corrupt_elf_is_an_error_naming_the_file(tmp_path, fixture_packages) -> None:
    jq = member_bytes(fixture_packages["jq"], "usr/bin/jq")
    pkg = write_package(tmp_path, "app-misc/broken-1", [
        ("usr/bin/truncated", "file", 0o755, jq[:40]),
        ("usr/bin/garbage", "file", 0o755, b"\x7fELF" + b"\xff" * 100),
        ("usr/share/not-elf", "file", 0o644, b"\x7fEL"),
    ])
    tree = stage_tree(tmp_path, [pkg])
    error = one_error(run(tree, base=glibc_base(tmp_path)))
    assert error.startswith("Files start like ELF files but cannot be read as ELF:\n")
    assert "  /usr/bin/garbage (app-misc/broken-1): " in error
    assert "  /usr/bin/truncated (app-misc/broken-1): " in error
    assert "not-elf" not in error
    assert "rebuild it, or leave the file out with `exclude=`" in error


# --- programs built here: RUNPATH/RPATH, $ORIGIN, $LIB, symlinks -------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, bytes]:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("needs gcc to build test programs")
    d = tmp_path_factory.mktemp("cc")
    (d / "foo.c").write_text("int foo(void) { return 42; }\n")
    (d / "main.c").write_text("int foo(void);\nint main(void) { return foo() == 42 ? 0 : 1; }\n")

    def cc(*args: str) -> None:
        subprocess.run([gcc, *args], cwd=d, check=True, capture_output=True)

    cc("-shared", "-fPIC", "-Wl,-soname,libfoo.so.1", "-o", "libfoo.so.1", "foo.c")
    (d / "libfoo.so").symlink_to("libfoo.so.1")
    cc("-o", "runpath", "main.c", "-L.", "-lfoo", "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../private")
    cc("-o", "rpath", "main.c", "-L.", "-lfoo", "-Wl,--disable-new-dtags,-rpath,${ORIGIN}/../private")
    cc("-o", "libdir", "main.c", "-L.", "-lfoo", "-Wl,--enable-new-dtags,-rpath,/usr/$LIB/foo")
    cc("-o", "plain", "main.c", "-L.", "-lfoo")
    out = {name: (d / name).read_bytes() for name in ("libfoo.so.1", "runpath", "rpath", "libdir", "plain")}
    readelf = subprocess.run(["readelf", "-d", str(d / "rpath")], capture_output=True, text=True).stdout
    assert "(RPATH)" in readelf and "(RUNPATH)" not in readelf
    return out


def _foo_tree(tmp_path: Path, entries: list[tuple]) -> Path:
    pkg = write_package(tmp_path, "dev-util/foo-1", entries)
    return stage_tree(tmp_path, [pkg], name="foo")


@pytest.mark.parametrize("program", ["runpath", "rpath"])
def test_origin_relative_search_path_finds_a_library_in_a_private_directory(tmp_path, built, program) -> None:
    tree = _foo_tree(tmp_path, [
        ("usr/lib/foo/bin/foo", "file", 0o755, built[program]),
        ("usr/lib/foo/private/libfoo.so.1", "file", 0o755, built["libfoo.so.1"]),
    ])
    assert run(tree, name="foo", base=glibc_base(tmp_path)).errors == ()


def test_library_outside_the_search_path_is_missing(tmp_path, built) -> None:
    tree = _foo_tree(tmp_path, [
        ("usr/lib/foo/bin/foo", "file", 0o755, built["runpath"]),
        ("usr/lib/foo/other/libfoo.so.1", "file", 0o755, built["libfoo.so.1"]),
    ])
    error = one_error(run(tree, name="foo", base=glibc_base(tmp_path)))
    assert (
        "  /usr/lib/foo/bin/foo (dev-util/foo-1) → libfoo.so.1 (searched its RUNPATH "
        "$ORIGIN/../private too)\n"
    ) in error


@pytest.mark.parametrize(
    "layout",
    [
        # the private directory is an absolute symlink to the real one
        [("usr/lib/foo/private", "symlink", 0o777, "/usr/lib/foo/real"),
         ("usr/lib/foo/real/libfoo.so.1", "file", 0o755, "LIB")],
        # a relative symlink chain to the library
        [("usr/lib/foo/private/libfoo.so.1", "symlink", 0o777, "../real/libfoo.so.1.0"),
         ("usr/lib/foo/real/libfoo.so.1.0", "symlink", 0o777, "libfoo.so.1.0.0"),
         ("usr/lib/foo/real/libfoo.so.1.0.0", "file", 0o755, "LIB")],
        # the binary reaches the library through a symlinked directory and ..
        [("usr/lib/foo/private/libfoo.so.1", "symlink", 0o777, "../../../lib64/x/../libfoo.so.1"),
         ("usr/lib64/x", "dir", 0o755, None),
         ("usr/lib64/libfoo.so.1", "file", 0o755, "LIB")],
    ],
)
def test_symlinks_inside_the_tree_are_followed(tmp_path, built, layout) -> None:
    entries = [("usr/lib/foo/bin/foo", "file", 0o755, built["runpath"])]
    entries += [(p, t, m, built["libfoo.so.1"] if x == "LIB" else x) for p, t, m, x in layout]
    tree = _foo_tree(tmp_path, entries)
    assert run(tree, name="foo", base=glibc_base(tmp_path)).errors == ()


@pytest.mark.parametrize(
    "target", ["/nonexistent/libfoo.so.1", "../../../../../../etc/libfoo.so.1", "libfoo.so.1"]
)
def test_symlinks_that_leave_the_tree_or_loop_are_not_found(tmp_path, built, target) -> None:
    tree = _foo_tree(tmp_path, [
        ("usr/lib/foo/bin/foo", "file", 0o755, built["runpath"]),
        ("usr/lib/foo/private/libfoo.so.1", "symlink", 0o777, target),
    ])
    assert "/usr/lib/foo/bin/foo (dev-util/foo-1) → libfoo.so.1" in one_error(
        run(tree, name="foo", base=glibc_base(tmp_path))
    )


def test_lib_is_expanded_and_standard_directories_are_searched(tmp_path, built) -> None:
    tree = _foo_tree(tmp_path, [
        ("usr/bin/foo-libdir", "file", 0o755, built["libdir"]),
        ("usr/lib64/foo/libfoo.so.1", "file", 0o755, built["libfoo.so.1"]),
    ])
    assert run(tree, name="foo", base=glibc_base(tmp_path)).errors == ()
    # No search path: the standard directories, including the multiarch one.
    tree = _foo_tree(tmp_path / "b", [
        ("usr/bin/foo", "file", 0o755, built["plain"]),
        ("usr/lib/x86_64-linux-gnu/libfoo.so.1", "file", 0o755, built["libfoo.so.1"]),
    ])
    assert run(tree, name="foo", base=glibc_base(tmp_path)).errors == ()


def test_a_library_for_another_machine_is_skipped_like_ld_so_does(tmp_path, built) -> None:
    tree = _foo_tree(tmp_path, [
        ("usr/bin/foo", "file", 0o755, built["plain"]),
        ("usr/lib64/libfoo.so.1", "file", 0o755, _patched(built["libfoo.so.1"], 183)),
        ("usr/lib/libfoo.so.1", "file", 0o755, built["libfoo.so.1"]),
    ])
    # The arm64 copy is an architecture error, but the x86-64 one in usr/lib is found.
    error = one_error(run(tree, name="foo", base=glibc_base(tmp_path)))
    assert error.startswith("ELF files are built for another architecture")
    assert "/usr/lib64/libfoo.so.1 (dev-util/foo-1)" in error and "/usr/bin/foo" not in error
