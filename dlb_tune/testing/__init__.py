"""The test kit: what dlb-tune's tests and benchmarks share, imported one way::

    from dlb_tune.testing import AutoscalingCluster, wait_until, data_mirror, COUNTED_TASK

* a local autoscaling Ray cluster (Ray's fake multi-node provider) and the reading of a
  multi-node sweep's folder around a killed node;
* a local mirror serving every data set in its publisher's format (``data_mirror``);
* ``fcn_counted``, the FCN task logging every call, registered only when asked for.

Installed with the package, so Ray's worker processes import the counting task by its module
name from any folder. Nothing here is a built-in task: ``dlb_tune.tasks`` discovers only its own
package. Each name is imported from its module on first use (Ray, torch), as in ``dlb_tune``.
"""

from __future__ import annotations

import importlib
from typing import Any

_CLUSTER, _SCENARIOS, _COUNTING = (f"{__name__}.{m}" for m in ("autoscaling_cluster", "cluster_scenarios",
                                                                 "counting_task"))
# name -> the module that defines it
_KIT = {
    # a local autoscaling cluster
    "AutoscalingCluster": _CLUSTER,
    # a multi-node sweep's folder, around a killed node
    "result_rows": _SCENARIOS, "history": _SCENARIOS, "epochs_around": _SCENARIOS, "wait_until": _SCENARIOS,
    "wait_for_victim": _SCENARIOS,
    # the data mirror, used as a module (build, start, its builders)
    "data_mirror": f"{__name__}.data_mirror",
    # the counting task
    "COUNTED_TASK": _COUNTING, "register_counted_task": _COUNTING, "read_calls": _COUNTING,
    "weights_fingerprint": _COUNTING, "counting_cli": _COUNTING,
}

__all__ = list(_KIT)


def __getattr__(name: str) -> Any:
    module = _KIT.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    loaded = importlib.import_module(module)
    value = loaded if module.endswith(f".{name}") else getattr(loaded, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
