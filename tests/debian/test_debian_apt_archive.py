"""Release/InRelease, signatures and Packages against a real signed local apt repository.

The repository (see `apt_repo.py`) holds the six fixture debs, a `Packages` index written by
`dpkg-scanpackages`, and a `Release` signed with a throw-away key. Real apt is the oracle: it must
accept the repository and see the versions `parse_packages` sees.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import shutil
import subprocess
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from debian import deb822 as pydeb822

from pants_sysext.formats import apt_archive
from pants_sysext.formats.apt_archive import (
    AptArchiveError,
    check_index,
    check_release_dates,
    dearmor,
    decompress_index,
    index_compression,
    open_index,
    parse_packages,
    parse_release,
    read_packages_file,
    verify_inrelease,
    verify_release_gpg,
)
from pants_sysext.formats.compression import Compression
from pants_sysext.formats.deb import read_deb_info
from pants_sysext.formats.deb822 import Relation
from tests.debian.apt_repo import (
    ARCH,
    COMPONENT,
    INDEX_DIR,
    OTHER_KEY,
    SUITE,
    TEST_KEY,
    release_text,
)
from tests.debian.deb_builders import FIXTURE_DEBS, fixture_deb

PACKAGES_XZ = f"{INDEX_DIR}/Packages.xz"


def copy(src: Path, dst: Path) -> Path:
    shutil.copyfile(src, dst)
    return dst


# --- signatures --------------------------------------------------------------------------------


def test_verify_inrelease(repo) -> None:
    body = verify_inrelease(str(repo.inrelease), [str(repo.keyring)])
    assert body == repo.release.read_bytes()
    release = parse_release(body)
    assert release == parse_release(repo.release.read_text())
    assert (release.suite, release.codename, release.origin, release.label) == (
        SUITE,
        SUITE,
        "Test",
        "Test",
    )
    assert release.architectures == (ARCH,) and release.components == (COMPONENT,)
    assert not release.acquire_by_hash
    assert [f.path for f in release.files] == [
        f"{INDEX_DIR}/Packages",
        f"{INDEX_DIR}/Packages.gz",
        PACKAGES_XZ,
    ]
    entry = release.file(PACKAGES_XZ)
    assert entry.size == repo.index().stat().st_size
    assert entry.sha256 == hashlib.sha256(repo.index().read_bytes()).hexdigest()
    assert release.field("description") == "throw-away test repository"
    check_release_dates(release)


def test_verify_with_armored_keyring_and_several_keyrings(repo) -> None:
    body = repo.release.read_bytes()
    assert verify_inrelease(str(repo.inrelease), str(repo.keyring_asc)) == body
    assert verify_inrelease(str(repo.inrelease), [str(repo.other_keyring), str(repo.keyring)]) == body


def test_relative_keyring_path_is_not_looked_up_in_a_gnupg_home(repo, monkeypatch) -> None:
    monkeypatch.chdir(repo.keyring.parent)
    assert verify_inrelease(str(repo.inrelease), repo.keyring.name) == repo.release.read_bytes()


def test_tampered_inrelease_is_refused(repo, tmp_path) -> None:
    text = repo.inrelease.read_text()
    entry = parse_release(repo.release.read_text()).file(PACKAGES_XZ)
    forged = "0" * 64 if entry.sha256 != "0" * 64 else "1" * 64
    tampered = tmp_path / "InRelease"
    tampered.write_text(text.replace(entry.sha256, forged))
    with pytest.raises(AptArchiveError) as info:
        verify_inrelease(str(tampered), [str(repo.keyring)])
    message = str(info.value)
    assert message.startswith(f"{tampered}: the signature did not verify with the keyring(s) "
                              f"{repo.keyring}")
    assert "BADSIG" in message


def test_other_keyring_is_refused(repo) -> None:
    with pytest.raises(AptArchiveError) as info:
        verify_inrelease(str(repo.inrelease), [str(repo.other_keyring)])
    message = str(info.value)
    assert f"did not verify with the keyring(s) {repo.other_keyring}" in message
    assert "NO_PUBKEY" in message


def test_signed_by_an_unknown_key_as_well(repo, tmp_path) -> None:
    """Debian signs with several keys; one good signature by a trusted key is enough (as apt)."""
    both = repo.gpg.clearsign(repo.release, tmp_path / "InRelease", TEST_KEY, OTHER_KEY)
    assert verify_inrelease(str(both), [str(repo.keyring)]) == repo.release.read_bytes()
    assert verify_inrelease(str(both), [str(repo.other_keyring)]) == repo.release.read_bytes()
    only_other = repo.gpg.clearsign(repo.release, tmp_path / "InRelease.other", OTHER_KEY)
    with pytest.raises(AptArchiveError, match="NO_PUBKEY"):
        verify_inrelease(str(only_other), [str(repo.keyring)])


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda t: "Suite: evil\n\n" + t, r"not a clear-signed message"),
        (lambda t: t + "Suite: evil\n", r"unsigned data after the signature"),
        (lambda t: t + t, r"exactly one signed message"),
        (lambda t: t.replace("-----BEGIN PGP SIGNATURE-----", "-----BEGIN PGP SIGNATURE-----\n"
                             "-----BEGIN PGP SIGNATURE-----"), r"exactly one signed message"),
    ],
)
def test_inrelease_structure(repo, tmp_path, edit, match) -> None:
    path = tmp_path / "InRelease"
    path.write_text(edit(repo.inrelease.read_text()))
    with pytest.raises(AptArchiveError, match=match):
        verify_inrelease(str(path), [str(repo.keyring)])


def test_unsigned_release_is_not_an_inrelease(repo) -> None:
    with pytest.raises(AptArchiveError, match="not a clear-signed message"):
        verify_inrelease(str(repo.release), [str(repo.keyring)])


def test_keyring_problems(repo, tmp_path) -> None:
    with pytest.raises(AptArchiveError, match=r"keyring .*/missing.gpg: cannot read"):
        verify_inrelease(str(repo.inrelease), [str(tmp_path / "missing.gpg")])
    empty = tmp_path / "empty.gpg"
    empty.write_bytes(b"")
    with pytest.raises(AptArchiveError, match="empty file"):
        verify_inrelease(str(repo.inrelease), [str(empty)])
    with pytest.raises(AptArchiveError, match="no keyring given"):
        verify_inrelease(str(repo.inrelease), [])
    garbage = tmp_path / "garbage.gpg"
    garbage.write_bytes(b"not a keyring at all")
    with pytest.raises(AptArchiveError, match=rf"did not verify with the keyring\(s\) {garbage}"):
        verify_inrelease(str(repo.inrelease), [str(garbage)])
    with pytest.raises(AptArchiveError, match=r"cannot run /nonexistent/gpgv"):
        verify_inrelease(str(repo.inrelease), [str(repo.keyring)], gpgv="/nonexistent/gpgv")


def test_dearmor_matches_gpg(repo, tmp_path) -> None:
    assert dearmor(repo.keyring_asc.read_text()) == repo.keyring.read_bytes()
    text = repo.keyring_asc.read_text()
    lines = text.splitlines()
    i = next(n for n, line in enumerate(lines) if len(line) > 40)
    lines[i] = ("A" if lines[i][0] != "A" else "B") + lines[i][1:]
    with pytest.raises(AptArchiveError, match="checksum mismatch"):
        dearmor("\n".join(lines) + "\n")
    with pytest.raises(AptArchiveError, match="no `-----BEGIN PGP PUBLIC KEY BLOCK-----`"):
        dearmor("hello")


def test_detached_signature(repo, tmp_path) -> None:
    signature = repo.suite_dir / "Release.gpg"
    assert verify_release_gpg(str(repo.release), str(signature), [str(repo.keyring)]) == (
        repo.release.read_bytes()
    )
    tampered = tmp_path / "Release"
    tampered.write_text(repo.release.read_text().replace("Suite: bookworm", "Suite: sid"))
    with pytest.raises(AptArchiveError, match=r"the signature did not verify.*BADSIG"):
        verify_release_gpg(str(tampered), str(signature), [str(repo.keyring)])
    with pytest.raises(AptArchiveError, match="NO_PUBKEY"):
        verify_release_gpg(str(repo.release), str(signature), [str(repo.other_keyring)])


@pytest.mark.parametrize(
    "status, good, problem",
    [
        (
            "[GNUPG:] GOODSIG 1 A\n[GNUPG:] VALIDSIG F 2024-01-01 1 0 4 0 22 2 01 P\n",
            False,
            "weak digest SHA1",
        ),
        ("[GNUPG:] EXPKEYSIG 1 A\n", False, "expired key"),
        ("[GNUPG:] REVKEYSIG 1 A\n", False, "revoked key"),
        ("[GNUPG:] NODATA 1\n", False, "no signature found"),
        (
            "[GNUPG:] GOODSIG 1 A\n[GNUPG:] VALIDSIG F 2024-01-01 1 0 4 0 22 8 01 P\n"
            "[GNUPG:] BADSIG 2 B\n",
            False,
            "BAD signature",
        ),
        ("[GNUPG:] GOODSIG 1 A\n[GNUPG:] VALIDSIG F 2024-01-01 1 0 4 0 22 10 01 P\n", True, None),
        (  # the good signature is weak, the strong one is by an expired key
            "[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG 1 A\n"
            "[GNUPG:] VALIDSIG F 2024-01-01 1 0 4 0 22 2 01 P\n"
            "[GNUPG:] NEWSIG\n[GNUPG:] EXPKEYSIG 2 B\n"
            "[GNUPG:] VALIDSIG G 2024-01-01 1 0 4 0 22 8 01 Q\n",
            False,
            "weak digest SHA1",
        ),
        (
            "[GNUPG:] NEWSIG\n[GNUPG:] ERRSIG 9D 22 8 01 1 9 FF\n[GNUPG:] NO_PUBKEY 9D\n"
            "[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG 1 A\n"
            "[GNUPG:] VALIDSIG F 2024-01-01 1 0 4 0 22 8 01 P\n",
            True,
            None,
        ),
    ],
)
def test_status_rules(status: str, good: bool, problem) -> None:
    verdict = apt_archive._judge_status(status)
    assert verdict.fatal is not good
    if problem:
        assert any(problem in p for p in verdict.problems), verdict.problems
    else:
        assert verdict.good == ("P",)


# --- Release -----------------------------------------------------------------------------------


def test_parse_release_refuses_signed_text(repo) -> None:
    with pytest.raises(AptArchiveError, match="clear-signed message; check its signature"):
        parse_release(repo.inrelease.read_bytes())


@pytest.mark.parametrize(
    "text, match",
    [
        ("Suite: x\n", r"no SHA256 file list"),
        ("Origin: x\nSHA256:\n", r"neither Suite nor Codename"),
        ("Suite: x\nSHA256:\n abc 1 main/Packages\n", r"malformed line"),
        ("Suite: x\nSHA256:\n " + "a" * 64 + " -1 main/Packages\n", r"malformed line"),
        ("Suite: x\nSHA256:\n " + "a" * 64 + " 1 ../../etc/passwd\n", r"unsafe path"),
        ("Suite: x\nSHA256:\n " + "a" * 64 + " 1 /etc/passwd\n", r"unsafe path"),
        ("Suite: x\nSHA256:\n " + "a" * 64 + " 1 p\n " + "b" * 64 + " 2 p\n", r"p is listed twice"),
        ("Suite: x\nDate: yesterday\nSHA256:\n", r"cannot parse Date 'yesterday'"),
        ("Suite: x\n\nSuite: y\n", r"exactly one stanza"),
    ],
)
def test_bad_release(text: str, match: str) -> None:
    with pytest.raises(AptArchiveError, match=match):
        parse_release(text)


def test_release_dates(repo) -> None:
    now = datetime.now(timezone.utc)
    release = parse_release(repo.release.read_text())
    assert release.date_time < now < release.valid_until_time
    with pytest.raises(AptArchiveError, match=r"expired on .* \(Valid-Until\)"):
        check_release_dates(release, now=now + timedelta(days=8))
    with pytest.raises(AptArchiveError, match="in the future"):
        check_release_dates(release, now=now - timedelta(days=1))


def test_packages_index_choice(repo) -> None:
    release = parse_release(repo.release.read_text())
    assert release.packages_index(COMPONENT, ARCH).path == PACKAGES_XZ
    assert release.packages_index(COMPONENT, ARCH, suffixes=(".gz",)).path.endswith(".gz")
    with pytest.raises(AptArchiveError, match="lists no contrib/binary-amd64/Packages"):
        release.packages_index("contrib", ARCH)


# --- index checks ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Packages", "Packages.gz", "Packages.xz"])
def test_check_index(repo, name: str) -> None:
    release = parse_release(verify_inrelease(str(repo.inrelease), [str(repo.keyring)]))
    entry = check_index(release, f"{INDEX_DIR}/{name}", str(repo.index(name)))
    assert entry.path == f"{INDEX_DIR}/{name}"
    with open(repo.index(name), "rb") as stream:
        assert check_index(release, f"{INDEX_DIR}/{name}", stream) == entry


def test_check_index_mismatch(repo, tmp_path) -> None:
    release = parse_release(repo.release.read_text())
    text = repo.index("Packages").read_bytes().replace(b"Version: 1.6-2.1+deb12u3",
                                                       b"Version: 9.9-9")
    forged = tmp_path / "Packages.xz"
    forged.write_bytes(lzma.compress(text, format=lzma.FORMAT_XZ))
    with pytest.raises(AptArchiveError) as info:
        check_index(release, PACKAGES_XZ, str(forged))
    message = str(info.value)
    want = release.file(PACKAGES_XZ).sha256
    got = hashlib.sha256(forged.read_bytes()).hexdigest()
    assert message.startswith(f"{forged}: does not match {PACKAGES_XZ} in Release")
    assert f"SHA256 {got}" in message and f"Release says SHA256 {want}" in message
    with pytest.raises(AptArchiveError, match=r"is not listed in the SHA256 list"):
        check_index(release, f"{COMPONENT}/binary-arm64/Packages.xz", str(forged))


def test_same_size_different_content_is_caught(repo, tmp_path) -> None:
    release = parse_release(repo.release.read_text())
    data = bytearray(repo.index("Packages").read_bytes())
    data[10] ^= 1
    forged = tmp_path / "Packages"
    forged.write_bytes(bytes(data))
    with pytest.raises(AptArchiveError, match="does not match"):
        check_index(release, f"{INDEX_DIR}/Packages", str(forged))


# --- Packages ----------------------------------------------------------------------------------


def dpkg_fields(deb: str) -> pydeb822.Deb822:
    return pydeb822.Deb822(
        subprocess.run(["dpkg-deb", "-f", deb], stdout=subprocess.PIPE, check=True, text=True).stdout
    )


def _relations(value):
    if not value:
        return []
    return [
        [(r["name"], r.get("archqual"), *(r["version"] or (None, None))) for r in group]
        for group in pydeb822.PkgRelation.parse_relations(value)
    ]


def test_parse_packages_matches_dpkg_deb(repo) -> None:
    packages = read_packages_file(str(repo.index("Packages.xz")))
    assert len(packages) == len(FIXTURE_DEBS)
    by_name = {p.package: p for p in packages}
    for name in FIXTURE_DEBS:
        fields = dpkg_fields(fixture_deb(name))
        package = by_name[fields["Package"]]
        assert (package.version, package.architecture) == (fields["Version"], fields["Architecture"])
        assert package.label == name[: -len(".deb")]
        assert package.filename == f"pool/{COMPONENT}/{name}"
        pool_file = repo.root / package.filename
        assert package.size == pool_file.stat().st_size
        assert package.sha256 == hashlib.sha256(pool_file.read_bytes()).hexdigest()
        assert package.multi_arch == fields.get("Multi-Arch", "no")
        assert package.essential == (fields.get("Essential") == "yes")
        for attr, field in [("depends", "Depends"), ("pre_depends", "Pre-Depends")]:
            ours = [[(r.name, r.arch, r.op, r.version) for r in g] for g in getattr(package, attr)]
            assert ours == _relations(fields.get(field)), (name, field)
        for attr, field in [("provides", "Provides"), ("conflicts", "Conflicts"),
                            ("breaks", "Breaks")]:
            ours = [[(r.name, r.arch, r.op, r.version)] for r in getattr(package, attr)]
            assert ours == _relations(fields.get(field)), (name, field)
        info = read_deb_info(str(pool_file))
        assert info.label == package.label
    jq = by_name["jq"]
    assert jq.depends[0] == (Relation("libjq1", None, "=", "1.6-2.1+deb12u3"),)
    assert (jq.source, jq.source_version) == ("jq", "1.6-2.1+deb12u3")
    libjq = by_name["libjq1"]
    assert (libjq.source, libjq.multi_arch) == ("jq", "same")
    assert by_name["ppp"].source_version == "2.4.9-1+1.1"
    assert jq.url("http://127.0.0.1:1/debian/") == (
        "http://127.0.0.1:1/debian/pool/main/jq_1.6-2.1+deb12u3_amd64.deb"
    )


def test_every_input_form_gives_the_same_packages(repo) -> None:
    want = read_packages_file(str(repo.index("Packages")))
    for name in ("Packages", "Packages.gz", "Packages.xz"):
        data = repo.index(name).read_bytes()
        assert read_packages_file(str(repo.index(name))) == want
        assert parse_packages(data) == want  # compressed bytes are detected by magic
        with open_index(str(repo.index(name))) as stream:
            assert parse_packages(stream) == want
    text = repo.index("Packages").read_text()
    assert parse_packages(text) == want
    assert parse_packages(io.BytesIO(text.encode())) == want
    assert decompress_index(repo.index("Packages.gz").read_bytes()) == text.encode()


def test_index_compression_by_name(tmp_path) -> None:
    assert index_compression("main/binary-amd64/Packages.xz") == Compression.XZ
    assert index_compression("Packages.gz") == Compression.GZIP
    assert index_compression("Packages.zst") == Compression.ZSTD
    assert index_compression("Packages") == Compression.NONE
    liar = tmp_path / "Packages.xz"
    liar.write_bytes(b"Package: a\n")
    with pytest.raises(AptArchiveError, match=r"the name says xz, but the content starts with"):
        read_packages_file(str(liar))
    plain = tmp_path / "Packages"
    plain.write_bytes(lzma.compress(b"Package: a\n", format=lzma.FORMAT_XZ))
    with pytest.raises(AptArchiveError, match=r"the name says uncompressed, but the content is xz"):
        read_packages_file(str(plain))


def test_corrupt_compressed_index(repo, tmp_path) -> None:
    data = repo.index("Packages.xz").read_bytes()
    broken = tmp_path / "Packages.xz"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(AptArchiveError, match=r"Packages.xz: .*(truncated|corrupt) xz stream"):
        read_packages_file(str(broken))


GOOD = (
    "Package: a\nVersion: 1.0\nArchitecture: amd64\nFilename: pool/main/a_1.0_amd64.deb\n"
    "Size: 10\nSHA256: " + "a" * 64 + "\n"
)


@pytest.mark.parametrize(
    "text, match",
    [
        (GOOD.replace("pool/main/a_1.0_amd64.deb", "../../etc/passwd"), r"unsafe Filename"),
        (GOOD.replace("pool/main/a_1.0_amd64.deb", "/etc/passwd"), r"unsafe Filename"),
        (GOOD.replace("pool/main/", "pool//main/"), r"unsafe Filename"),
        (GOOD.replace("Size: 10", "Size: ten"), r"invalid Size 'ten'"),
        (GOOD.replace("a" * 64, "a" * 63), r"invalid SHA256"),
        (GOOD.replace("SHA256: " + "a" * 64 + "\n", ""), r"missing or empty field 'SHA256'"),
        (GOOD.replace("Filename: pool/main/a_1.0_amd64.deb\n", ""), r"'Filename'"),
        (GOOD.replace("Version: 1.0", "Version: 1.0 evil"), r"invalid version"),
        (GOOD + "Depends: b (>= 1) [amd64]\n", r"Depends: cannot parse"),
        (GOOD + "Multi-Arch: perhaps\n", r"invalid Multi-Arch"),
        (GOOD + "\n Size: 10\n", r"continuation line outside a field"),
    ],
)
def test_bad_packages(text: str, match: str) -> None:
    with pytest.raises(AptArchiveError, match=rf"Packages:\d+: .*{match}"):
        parse_packages(text)


def test_good_packages_stanza() -> None:
    [pkg] = parse_packages(GOOD.upper().replace("PACKAGE: A", "Package: a").replace(
        "VERSION: 1.0", "Version: 1.0").replace("ARCHITECTURE: AMD64", "Architecture: amd64")
        .replace("FILENAME: POOL/MAIN/A_1.0_AMD64.DEB", "Filename: pool/main/a_1.0_amd64.deb"))
    assert pkg.sha256 == "a" * 64 and pkg.size == 10 and pkg.multi_arch == "no"


# --- end to end over HTTP, and apt as the oracle -----------------------------------------------


def fetch(url: str, dst: Path) -> Path:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=30) as response, open(dst, "wb") as out:
        shutil.copyfileobj(response, out)
    return dst


def test_fetch_and_verify_over_http(repo, server, tmp_path) -> None:
    dists = f"{server.url}/dists/{SUITE}"
    inrelease = fetch(f"{dists}/InRelease", tmp_path / "InRelease")
    release = parse_release(verify_inrelease(str(inrelease), [str(repo.keyring)]))
    check_release_dates(release)
    index = release.packages_index(COMPONENT, ARCH)
    packages_xz = fetch(f"{dists}/{index.path}", tmp_path / "Packages.xz")
    check_index(release, index.path, str(packages_xz))
    packages = read_packages_file(str(packages_xz))
    jq = next(p for p in packages if p.package == "jq")
    deb = fetch(jq.url(server.url), tmp_path / os.path.basename(jq.filename))
    assert deb.stat().st_size == jq.size
    assert hashlib.sha256(deb.read_bytes()).hexdigest() == jq.sha256
    assert read_deb_info(str(deb)).label == jq.label


def _run_apt(tmp_path: Path, server, keyring: Path, *args: str) -> subprocess.CompletedProcess:
    """apt-get/apt-cache with a private configuration: only our source, our state dirs."""
    base = tmp_path / "apt"
    for sub in ("state/lists/partial", "cache/archives/partial", "empty", "etc"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    (base / "status").touch()
    (base / "etc" / "sources.list").write_text(
        f"deb [signed-by={keyring}] {server.url}/ {SUITE} {COMPONENT}\n"
    )
    conf = base / "apt.conf"
    conf.write_text(
        f'Dir::Etc::parts "{base / "empty"}";\n'
        'Dir::Etc::main "/dev/null";\n'
        f'Dir::Etc::sourcelist "{base / "etc" / "sources.list"}";\n'
        f'Dir::Etc::sourceparts "{base / "empty"}";\n'
        f'Dir::Etc::preferences "{base / "etc" / "preferences"}";\n'
        f'Dir::Etc::preferencesparts "{base / "empty"}";\n'
        f'Dir::Etc::trusted "{base / "etc" / "trusted.gpg"}";\n'
        f'Dir::Etc::trustedparts "{base / "empty"}";\n'
        f'Dir::State "{base / "state"}";\n'
        f'Dir::State::status "{base / "status"}";\n'
        f'Dir::Cache "{base / "cache"}";\n'
        'APT::Architecture "amd64";\n'
        'APT::Architectures { "amd64"; };\n'
        'APT::Sandbox::User "root";\n'
        'Acquire::Languages "none";\n'
        'Acquire::Retries "0";\n'
        'Debug::NoLocking "true";\n'
    )
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(APT_CONFIG=str(conf), LC_ALL="C")
    return subprocess.run(
        list(args), env=env, cwd=base, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=120,
    )


needs_apt = pytest.mark.skipif(
    shutil.which("apt-get") is None or os.geteuid() != 0,
    reason="needs apt-get, run as root (apt's private state directories)",
)


@needs_apt
def test_apt_accepts_the_repository_and_sees_the_same_versions(repo, server, tmp_path) -> None:
    update = _run_apt(tmp_path, server, repo.keyring, "apt-get", "update")
    assert update.returncode == 0, update.stdout
    assert "E:" not in update.stdout and "W:" not in update.stdout, update.stdout

    packages = read_packages_file(str(repo.index("Packages.xz")))
    names = sorted(p.package for p in packages)
    madison = _run_apt(tmp_path, server, repo.keyring, "apt-cache", "madison", *names)
    assert madison.returncode == 0, madison.stdout
    seen = set()
    for line in madison.stdout.splitlines():
        name, version, origin = (part.strip() for part in line.split("|"))
        assert origin.startswith(f"{server.url} {SUITE}/{COMPONENT} {ARCH} Packages"), line
        seen.add((name, version))
    assert seen == {(p.package, p.version) for p in packages}

    policy = _run_apt(tmp_path, server, repo.keyring, "apt-cache", "policy", "jq")
    jq = next(p for p in packages if p.package == "jq")
    assert f"Candidate: {jq.version}" in policy.stdout, policy.stdout

    # apt downloads the .deb and checks it against the SHA256 of our index.
    download = _run_apt(tmp_path, server, repo.keyring, "apt-get", "download", "jq")
    assert download.returncode == 0, download.stdout
    fetched = tmp_path / "apt" / os.path.basename(jq.filename).replace(":", "%3a")
    assert hashlib.sha256(fetched.read_bytes()).hexdigest() == jq.sha256


@needs_apt
def test_apt_and_we_both_refuse_the_wrong_key(repo, server, tmp_path) -> None:
    update = _run_apt(tmp_path, server, repo.other_keyring, "apt-get", "update")
    assert update.returncode != 0
    assert "NO_PUBKEY" in update.stdout, update.stdout
    with pytest.raises(AptArchiveError, match="NO_PUBKEY"):
        verify_inrelease(str(repo.inrelease), [str(repo.other_keyring)])


@needs_apt
def test_apt_and_we_both_refuse_an_index_that_does_not_match_release(repo, tmp_path) -> None:
    """A copy of the repository whose Packages.xz changed after Release was signed."""
    root = tmp_path / "repo"
    shutil.copytree(repo.root, root)
    index = root / "dists" / SUITE / PACKAGES_XZ
    text = lzma.decompress(index.read_bytes()).replace(b"Version: 1.6-2.1+deb12u3",
                                                       b"Version: 1.6-2.1+deb12u4")
    index.write_bytes(lzma.compress(text, format=lzma.FORMAT_XZ))
    for other in ("Packages", "Packages.gz"):
        (root / "dists" / SUITE / INDEX_DIR / other).unlink()
    release = parse_release(verify_inrelease(str(root / "dists" / SUITE / "InRelease"),
                                             [str(repo.keyring)]))
    with pytest.raises(AptArchiveError, match="does not match"):
        check_index(release, PACKAGES_XZ, str(index))

    from tests.debian.apt_repo import serve

    for server in serve(root):
        update = _run_apt(tmp_path, server, repo.keyring, "apt-get", "update")
        assert update.returncode != 0, update.stdout
        assert "Hash Sum mismatch" in update.stdout or "File has unexpected size" in update.stdout


def test_release_text_helper_matches_parse(repo) -> None:
    """The test repository's own Release writer lists what parse_release reads."""
    text = release_text(repo.suite_dir, [PACKAGES_XZ])
    assert [f.path for f in parse_release(text).files] == [PACKAGES_XZ]
