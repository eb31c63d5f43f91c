"""Extract the google provider's schema for the resources deploy/*.tf uses into deploy/schema/google-provider.json.

Run by hand when the provider version changes (needs npm and the npm registry); the tests read only the JSON:

    .venv/bin/python deploy/tools/provider_schema.py            # npm pack @cdktf/provider-google@VERSION
    .venv/bin/python deploy/tools/provider_schema.py --package DIR   # an unpacked package/ directory

`terraform validate` would need the provider binary; the cdktf package is generated from the same provider schema and
carries it as TypeScript (in each lib/<resource>/index.js source map): one "// name - computed: C, optional: O,
required: R" comment per attribute and block, `new XOutputReference(this, "name")` for nested blocks, and `isBlock`
in the HCL serializers, which tells a block from an attribute of object type.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import hcl2
from hcl2.utils import SerializationOptions

PACKAGE = "@cdktf/provider-google"
VERSION = "16.12.1"  # generated from hashicorp/google 6.50.0
DEPLOY = Path(__file__).resolve().parent.parent
OUTPUT = DEPLOY / "schema" / "google-provider.json"

CLASS = re.compile(r"^export class (\w+) extends cdktf\.(\w+) \{$", re.MULTILINE)
MEMBER = re.compile(
    r"^  // (\w+) - computed: (true|false), optional: (true|false), required: (true|false)\n(.*)$", re.MULTILINE
)
NESTED = re.compile(r'= new (\w+?)(OutputReference|List)\(this, "(\w+)"')
HCL_ENTRY = re.compile(r"^ +(\w+): \{\n +value: .*\n +isBlock: (true|false),", re.MULTILINE)
VERSION_IN_SOURCE = re.compile(r"providerVersion: '([0-9.]+)'")


def used_types(deploy: Path) -> dict[str, set[str]]:
    """The google_* resource and data source types that deploy/*.tf declares."""
    options = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)
    found: dict[str, set[str]] = {"resource": set(), "data": set()}
    for path in sorted(deploy.glob("*.tf")):
        parsed = hcl2.loads(path.read_text(), serialization_options=options)
        for kind, types in found.items():
            types.update(t for entry in parsed.get(kind, []) for t in entry if t.startswith("google_"))
    return found


def typescript(package: Path, kind: str, type_: str) -> str:
    """The generated TypeScript of one resource or data source, from the source map in its index.js."""
    directory = type_.removeprefix("google_").replace("_", "-")
    if kind == "data":
        directory = f"data-google-{directory}"
    javascript = (package / "lib" / directory / "index.js").read_text()
    encoded = javascript.rsplit("sourceMappingURL=data:application/json;base64,", 1)[1].strip()
    source: str = json.loads(base64.b64decode(encoded))["sourcesContent"][0]
    if f"terraformResourceType: '{type_}'" not in source:
        raise SystemExit(f"{directory}/index.js does not define {type_}")
    return source


def _sections(source: str, pattern: re.Pattern[str]) -> dict[str, str]:
    """Top-level declarations matching pattern, by name: each runs to the next top-level export."""
    starts = [(m.group(1), m.start()) for m in pattern.finditer(source)]
    ends = [m.start() for m in re.finditer(r"^export ", source, re.MULTILINE)] + [len(source)]
    return {name: source[start : next(e for e in ends if e > start)] for name, start in starts}


def _is_block(source: str, functions: dict[str, str], classes: dict[str, str], owner: str) -> dict[str, bool]:
    """For each name the owner's HCL serializer writes: whether it is written as a block."""
    interface = owner.removesuffix("OutputReference")
    text = functions.get(interface[0].lower() + interface[1:] + "ToHclTerraform")
    if text is None:  # the resource itself: its synthesizeHclAttributes()
        text = classes[owner].split("synthesizeHclAttributes()", 1)[-1]
    return {name: flag == "true" for name, flag in HCL_ENTRY.findall(text)}


def level(source: str, classes: dict[str, str], functions: dict[str, str], owner: str) -> dict[str, Any]:
    """One level of the schema: arguments (required or optional), computed-only attributes, and nested blocks."""
    arguments: dict[str, str] = {}
    computed: list[str] = []
    blocks: dict[str, Any] = {}
    blockish = _is_block(source, functions, classes, owner)
    for name, is_computed, optional, required, declaration in MEMBER.findall(classes[owner]):
        settable = optional == "true" or required == "true"
        nested = NESTED.search(declaration)
        if settable and nested and blockish.get(name, False) and nested.group(3) == name:
            child = level(source, classes, functions, nested.group(1) + "OutputReference")
            blocks[name] = {"required": required == "true", **child}
        elif settable:
            arguments[name] = "required" if required == "true" else "optional"
        elif is_computed == "true":
            computed.append(name)
    return {"arguments": dict(sorted(arguments.items())), "computed": sorted(computed), "blocks": blocks}


def schema(package: Path, kind: str, type_: str) -> tuple[str, dict[str, Any]]:
    """The provider version and the schema of one resource or data source."""
    source = typescript(package, kind, type_)
    classes = _sections(source, CLASS)
    functions = _sections(source, re.compile(r"^export function (\w+)\(", re.MULTILINE))
    base = "TerraformDataSource" if kind == "data" else "TerraformResource"
    (owner,) = [m.group(1) for m in CLASS.finditer(source) if m.group(2) == base]
    found = VERSION_IN_SOURCE.search(source)
    return (found.group(1) if found else "unknown"), level(source, classes, functions, owner)


def unpack(version: str, into: Path) -> Path:
    """npm pack the package into a temporary directory and unpack it; returns its package/ directory."""
    subprocess.run(["npm", "pack", f"{PACKAGE}@{version}", "--silent"], cwd=into, check=True, stdout=subprocess.DEVNULL)
    (tarball,) = into.glob("*.tgz")
    with tarfile.open(tarball) as archive:
        archive.extractall(into, filter="data")
    return into / "package"


def build(package: Path, version: str) -> dict[str, Any]:
    """The JSON document: where it came from, then the schema of every type deploy/ uses."""
    document: dict[str, Any] = {"source": f"{PACKAGE}@{version}", "provider": "hashicorp/google"}
    for kind, types in used_types(DEPLOY).items():
        section: dict[str, Any] = {}
        for type_ in sorted(types):
            document["provider_version"], section[type_] = schema(package, kind, type_)
        document["data_sources" if kind == "data" else "resources"] = section
    return document


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", type=Path, help="an unpacked package/ directory instead of npm pack")
    parser.add_argument("--version", default=VERSION, help=f"{PACKAGE} version (default {VERSION})")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as temporary:
        package = args.package or unpack(args.version, Path(temporary))
        document = build(package, args.version)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.output} ({len(document['resources'])} resources, {len(document['data_sources'])} data sources)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
