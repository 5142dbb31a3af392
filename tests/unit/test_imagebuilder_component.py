"""The EC2 Image Builder component against AWSTOE's documented document schema, and its wiring:
the CloudFormation recipe passes exactly its parameters, and it runs the same bake.sh as Packer.

The rules are those of the AWSTOE component document reference: schemaVersion 1.0; phases
named build, validate or test, each once; steps with a name unique in their phase, an action
module from the documented list and its inputs (ExecuteBash: a list of commands; S3Download
and S3Upload: a list of source/destination pairs); onFailure Abort, Continue or Ignore;
`{{ Name }}` only for declared parameters, `{{ phase.Step.outputs.stdout }}` only for an
earlier step of that phase.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPONENT = ROOT / "packaging" / "ami" / "imagebuilder-component.yaml"
PIPELINE = ROOT / "packaging" / "cloudformation" / "image-pipeline.yaml"
PACKER = ROOT / "packaging" / "ami" / "cockpit-agent.pkr.hcl"

PHASES = ("build", "validate", "test")
ACTIONS = {
    "Assert", "AppendFile", "CopyFile", "CopyFolder", "CreateFile", "CreateFolder",
    "CreateSymlink", "DeleteFile", "DeleteFolder", "ExecuteBash", "ExecuteBinary",
    "ExecuteDocument", "ExecutePowerShell", "InstallMSI", "ListFiles", "MoveFile", "MoveFolder",
    "ReadFile", "Reboot", "S3Download", "S3Upload", "SetFileEncoding", "SetFileOwner",
    "SetFolderOwner", "SetFilePermissions", "SetFolderPermissions", "SetRegistry",
    "UninstallMSI", "UpdateOS", "WebDownload",
}  # fmt: skip
STEP_KEYS = {"name", "action", "inputs", "onFailure", "timeoutSeconds", "maxAttempts", "if", "loop"}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
REFERENCE = re.compile(r"\{\{\s*([^}\s]+)\s*\}\}")


def problems(doc: dict[str, Any]) -> list[str]:
    """Every way `doc` breaks the documented schema (empty when it is valid)."""
    found: list[str] = []
    if str(doc.get("schemaVersion")) != "1.0":
        found.append(f"schemaVersion {doc.get('schemaVersion')!r} is not 1.0")
    for key in ("name", "phases"):
        if key not in doc:
            found.append(f"no {key}")
    extra = set(doc) - {"name", "description", "schemaVersion", "parameters", "constants",
                        "phases"}  # fmt: skip
    found += [f"unknown top-level key {k}" for k in sorted(extra)]
    params = set()
    for entry in doc.get("parameters", []):
        [(name, spec)] = entry.items()
        params.add(name)
        if spec.get("type") != "string":
            found.append(f"parameter {name}: type must be string")
    seen_phases: set[str] = set()
    for phase in doc.get("phases", []):
        pname = phase.get("name")
        if pname not in PHASES or pname in seen_phases:
            found.append(f"phase {pname!r}: not one of {PHASES} or repeated")
        seen_phases.add(pname)
        earlier: set[str] = set()
        for step in phase.get("steps") or [{}]:
            found += [f"{pname}: {p}" for p in step_problems(step, earlier, params, pname)]
            earlier.add(step.get("name", ""))
    return found


def step_problems(
    step: dict[str, Any], earlier: set[str], params: set[str], phase: str
) -> list[str]:
    name, action, inputs = step.get("name", ""), step.get("action"), step.get("inputs")
    found = [f"step {name}: unknown key {k}" for k in sorted(set(step) - STEP_KEYS)]
    if not NAME.match(name) or name in earlier:
        found.append(f"step name {name!r} is invalid or repeated")
    if action not in ACTIONS:
        found.append(f"step {name}: unknown action {action!r}")
    if step.get("onFailure", "Abort") not in ("Abort", "Continue", "Ignore"):
        found.append(f"step {name}: onFailure {step['onFailure']!r}")
    if action == "ExecuteBash" and not (
        isinstance(inputs, dict)
        and isinstance(inputs.get("commands"), list)
        and all(isinstance(c, str) for c in inputs["commands"])
    ):
        found.append(f"step {name}: ExecuteBash needs inputs.commands, a list of strings")
    if action in ("S3Download", "S3Upload") and not (
        isinstance(inputs, list)
        and inputs
        and all(isinstance(i, dict) and {"source", "destination"} <= set(i) for i in inputs)
    ):
        found.append(f"step {name}: {action} needs a list of source/destination inputs")
    for ref in REFERENCE.findall(yaml.safe_dump(inputs)):
        parts = ref.split(".")
        if len(parts) == 1 and ref not in params:
            found.append(f"step {name}: {{{{ {ref} }}}} is no declared parameter")
        elif len(parts) > 1 and (parts[0] != phase or parts[1] not in earlier):
            found.append(f"step {name}: {{{{ {ref} }}}} is no earlier step of {phase}")
    return found


def component() -> dict[str, Any]:
    return yaml.safe_load(COMPONENT.read_text())  # type: ignore[no-any-return]


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub, ...) read as plain values."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)  # type: ignore[arg-type]


CfnLoader.add_multi_constructor("!", _tag)


def test_the_component_follows_the_documented_schema() -> None:
    assert problems(component()) == []
    assert [p["name"] for p in component()["phases"]] == list(PHASES)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.update(schemaVersion=2.0), "schemaVersion"),
        (lambda d: d["phases"].append({"name": "deploy", "steps": []}), "phase 'deploy'"),
        (lambda d: d["phases"][0]["steps"][1].update(action="RunShell"), "unknown action"),
        (lambda d: d["phases"][0]["steps"][1].update(inputs={"cmds": []}), "inputs.commands"),
        (lambda d: d["phases"][0]["steps"][0].update(inputs={"source": "s3://b/"}), "S3Download"),
        (lambda d: d["phases"][0]["steps"][1].update(name="DownloadArtifacts"), "repeated"),
        (lambda d: d["phases"][0]["steps"][1].update(onFailure="Retry"), "onFailure"),
        (lambda d: d["phases"][0]["steps"][1].update(timeout=5), "unknown key timeout"),
        (lambda d: d["parameters"].pop(0), "ArtifactsS3Uri }} is no declared parameter"),
        (lambda d: d["phases"][0]["steps"].pop(2), "no earlier step of build"),
    ],
)
def test_the_schema_check_catches(change: Any, expected: str) -> None:
    doc = copy.deepcopy(component())
    change(doc)
    assert any(expected in p for p in problems(doc)), problems(doc)


def test_the_recipe_passes_exactly_the_components_parameters() -> None:
    template = yaml.load(PIPELINE.read_text(), Loader=CfnLoader)
    [wired] = template["Resources"]["Recipe"]["Properties"]["Components"]
    declared = {name for entry in component()["parameters"] for name in entry}
    assert {p["Name"] for p in wired["Parameters"]} == declared
    uri = template["Resources"]["BakeComponent"]["Properties"]["Uri"]
    assert uri.endswith(COMPONENT.name)


def test_image_builder_and_packer_run_the_same_bake() -> None:
    [bake_step] = [s for s in component()["phases"][0]["steps"] if s["name"] == "Bake"]
    builder = bake_step["inputs"]["commands"][0]
    packer = PACKER.read_text()
    assert builder.startswith("sh /tmp/cockpit-agent-bake/bake.sh --upgrade --scan ")
    assert 'bake.sh ${var.upgrade ? "--upgrade" : ""} --scan ${var.scan}' in packer
    assert 'source      = "${path.root}/bake.sh"' in packer
