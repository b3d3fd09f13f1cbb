"""`pants check` for `sysext_image` targets: every validation, without squashing."""

from __future__ import annotations

from pants.core.goals.check import CheckRequest, CheckResult, CheckResults
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.unions import UnionRule

from pants_sysext.tree import SysextImageFieldSet, SysextTree, SysextTreeRequest


class SysextCheckRequest(CheckRequest):
    field_set_type = SysextImageFieldSet
    tool_name = "sysext-validate"


@rule(desc="Validate sysext images")
async def check_sysext_images(request: SysextCheckRequest) -> CheckResults:
    results = []
    for field_set in request.field_sets:
        try:
            tree = await Get(SysextTree, SysextTreeRequest(field_set))
        except Exception as e:  # noqa: BLE001 — a failed step: report it as a failed check
            results.append(
                CheckResult(1, "", f"{field_set.address}: {e}\n", partition_description=str(field_set.address))
            )
            continue
        stdout = "".join(f"warning: {w}\n" for w in tree.warnings)
        stdout += f"{field_set.address}: {tree.name} is valid ({len(tree.packages)} packages)\n"
        results.append(CheckResult(0, stdout, "", partition_description=str(field_set.address)))
    return CheckResults(results, checker_name=request.tool_name)


def rules():
    return [*collect_rules(), UnionRule(CheckRequest, SysextCheckRequest)]
