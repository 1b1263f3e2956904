"""The dashboard's template parts render as well-formed HTML (html5lib strict) with the GPU idle policy
form and a refused edit kept in it (no browser, no service: the real template with page data)."""
from __future__ import annotations

from tests.onboarding.test_admin_html import page, parse_strict

POLICY = {"tenant": "team-a", "override": {"enabled": None, "threshold_pct": 3.0, "idle_s": None, "warn_s": None,
                                           "max_keep_hours": None},
          "default": {"enabled": True, "threshold_pct": 1.0, "idle_s": 1800.0, "warn_s": 300.0, "max_keep_hours": 24.0},
          "effective": {"enabled": True, "threshold_pct": 3.0, "idle_s": 1800.0, "warn_s": 300.0, "max_keep_hours": 24.0}}


def test_gpu_idle_policy_form_keeps_a_refused_edit():
    base = "/services/aistack/admin/"
    kept = {"action": base + "tenants/team-a/gpu-idle", "message": "tenant team-a: warn_s must be >= 0 and shorter",
            "form": {"enabled": "on", "threshold_pct": "3", "idle_min": "30", "warn_min": "999", "max_keep_hours": ""}}
    doc = parse_strict(page(gpu_policies={"team-a": POLICY}, kept=kept, dashboard_json="{}", partials={}))
    form = doc.find(".//form[@id='gpu-idle-team-a']")
    values = {i.get("name"): i.get("value") for i in form.iter("input") if i.get("type") == "text"}
    assert values == {"threshold_pct": "3", "idle_min": "30", "warn_min": "999", "max_keep_hours": ""}
    assert [o.get("value") for o in form.iter("option") if o.get("selected") is not None] == ["on"]
    assert "warn_s must be" in "".join(doc.find(".//div[@id='gpu-idle-error-team-a']").itertext())
    summary = " ".join("".join(doc.find(".//span[@data-gpu-idle='team-a']").itertext()).split())
    assert "under 3.0% for 30.0 min are stopped" in summary
    # without a refused edit: the stored override, the defaults as placeholders
    doc = parse_strict(page(gpu_policies={"team-a": POLICY}, dashboard_json="{}", partials={}))
    inp = doc.find(".//form[@id='gpu-idle-team-a']//input[@name='threshold_pct']")
    assert inp.get("value") == "3.0" and doc.find(".//input[@name='idle_min']").get("placeholder") == "30.0"
    assert doc.find(".//div[@id='gpu-idle-error-team-a']") is None
