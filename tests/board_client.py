"""TensorBoard's HTTP API, as its frontend calls it: what the tests read back from a running
``dlb-tune tensorboard``."""

from __future__ import annotations

import json
import math
import urllib.request
from typing import Any

from dlb_tune.objective import Objective


def get_json(url: str, payload: dict | None = None) -> Any:
    """GET, or POST ``payload`` the way TensorBoard's frontend does (the XSRF header it needs)."""
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json",
                                                          "X-XSRF-Protected": "1"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def session_groups(base_url: str, metric: str, mode: str, limit: int = 1000) -> list[dict[str, Any]]:
    """HParams sessions sorted by ``metric`` (a Ray tag such as ``ray/tune/best_val_acc``)."""
    order = "ORDER_DESC" if Objective(metric, mode).maximize else "ORDER_ASC"
    payload = {
        "experimentName": "", "startIndex": 0, "sliceSize": limit, "aggregationType": "AGGREGATION_AVG",
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
        "colParams": [{"metric": {"tag": metric, "group": ""}, "order": order, "excludeMissingValues": False}],
    }
    return get_json(base_url + "data/plugin/hparams/session_groups", payload)["sessionGroups"]


def metric_value(group: dict[str, Any], tag: str) -> float:
    for mv in group.get("metricValues", []):
        if mv["name"]["tag"] == tag:
            return mv["value"]
    return math.nan
