"""A PEP 517 / PEP 660 build backend for the llmroute package, standard
library only.

The package is a handful of .py files, so a wheel is a zip of them plus the
three dist-info files the wheel format asks for (METADATA, WHEEL, RECORD).
Building with this needs nothing pip would have to download, which is what
lets `pip install ./bindings/python` work on a machine without network.
Name, version, description and requires-python come from pyproject.toml's
[project] table.

Hooks: build_wheel, build_sdist, build_editable (a .pth file pointing at
this folder), and the optional get_requires_* / prepare_metadata_* hooks.
"""
import base64
import hashlib
import io
import os
import re
import tarfile
import time
import zipfile

ROOT = os.path.dirname(os.path.abspath(__file__))
PACKAGE = "llmroute"


def _project():
    """The string values of pyproject.toml's [project] table."""
    out, section = {}, None
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            m = re.match(r"^\[([^\]]+)\]$", line)
            if m:
                section = m.group(1)
                continue
            m = re.match(r'^([A-Za-z0-9_-]+)\s*=\s*"(.*)"$', line)
            if section == "project" and m:
                out[m.group(1)] = m.group(2)
    return out


def _metadata():
    p = _project()
    lines = ["Metadata-Version: 2.1", "Name: %s" % p["name"], "Version: %s" % p["version"]]
    if "description" in p:
        lines.append("Summary: %s" % p["description"])
    if "requires-python" in p:
        lines.append("Requires-Python: %s" % p["requires-python"])
    return p["name"], p["version"], "\n".join(lines) + "\n"


def _dist_info(name, version):
    return "%s-%s.dist-info" % (name.replace("-", "_"), version)


WHEEL = ("Wheel-Version: 1.0\nGenerator: llmroute build_backend\nRoot-Is-Purelib: true\n"
         "Tag: py3-none-any\n")


def _package_files():
    base = os.path.join(ROOT, PACKAGE)
    for name in sorted(os.listdir(base)):
        if name.endswith(".py"):
            yield "%s/%s" % (PACKAGE, name), os.path.join(base, name)


def _write_wheel(directory, files):
    """files: (archive name, bytes) pairs; dist-info added here."""
    name, version, metadata = _metadata()
    info = _dist_info(name, version)
    files = list(files) + [(info + "/METADATA", metadata.encode()),
                           (info + "/WHEEL", WHEEL.encode())]
    record = []
    for arcname, data in files:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        record.append("%s,sha256=%s,%d" % (arcname, digest.decode(), len(data)))
    record.append("%s/RECORD,," % info)
    files.append((info + "/RECORD", ("\n".join(record) + "\n").encode()))
    filename = "%s-%s-py3-none-any.whl" % (name.replace("-", "_"), version)
    stamp = time.localtime(max(time.time(), 315532800))[:6]  # zip needs >= 1980
    with zipfile.ZipFile(os.path.join(directory, filename), "w", zipfile.ZIP_DEFLATED) as z:
        for arcname, data in files:
            zi = zipfile.ZipInfo(arcname, stamp)
            zi.external_attr = 0o644 << 16
            z.writestr(zi, data, zipfile.ZIP_DEFLATED)
    return filename


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    name, version, metadata = _metadata()
    info = _dist_info(name, version)
    os.makedirs(os.path.join(metadata_directory, info), exist_ok=True)
    with open(os.path.join(metadata_directory, info, "METADATA"), "w") as f:
        f.write(metadata)
    with open(os.path.join(metadata_directory, info, "WHEEL"), "w") as f:
        f.write(WHEEL)
    return info


prepare_metadata_for_build_editable = prepare_metadata_for_build_wheel


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _write_wheel(wheel_directory, [(a, _read(p)) for a, p in _package_files()])


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _write_wheel(wheel_directory, [("%s.pth" % PACKAGE, (ROOT + "\n").encode())])


def build_sdist(sdist_directory, config_settings=None):
    name, version, metadata = _metadata()
    base = "%s-%s" % (name, version)
    filename = base + ".tar.gz"
    members = [("pyproject.toml", os.path.join(ROOT, "pyproject.toml")),
               ("build_backend.py", os.path.join(ROOT, "build_backend.py"))]
    members += list(_package_files())
    with tarfile.open(os.path.join(sdist_directory, filename), "w:gz") as t:
        for arcname, path in members:
            t.add(path, arcname="%s/%s" % (base, arcname), recursive=False)
        data = metadata.encode()
        ti = tarfile.TarInfo("%s/PKG-INFO" % base)
        ti.size = len(data)
        ti.mtime = int(time.time())
        t.addfile(ti, io.BytesIO(data))
    return filename
