"""The admin page's HTML is well formed: rendered from the real template with a viewer, tenants, members
holding every role, pending sign-ups and groups that are not tenants, then parsed by html5lib in strict
mode (any parse error fails: a ``<form>`` inside ``<tr>`` or ``<p>``, a stray end tag, a misnested element).
"""
from __future__ import annotations

import html5lib
import pytest

from aistack_hub.admin.data import gpu_hours_svg, normalise_tenant
from aistack_hub.admin.handlers import _env

XSRF = '<input type="hidden" name="_xsrf" value="x">'


def page(**over) -> str:
    tenants = [normalise_tenant({"name": "team-a", "admins": ["carol", "zed"], "high_users": ["bob"],
                                 "emergency_users": ["carol"], "max_high_share": 0.25,
                                 "quotas": {"any": {"gpu_milli": 2000, "max_servers_per_user": 2},
                                            "A100-80GB": {"gpu_milli": 1000}}}),
               normalise_tenant({"name": "team-b"})]
    data = {
        "me": {"name": "admin", "admin": True, "tenants": []}, "tenants": tenants,
        "members": {"team-a": ["alice", "bob", "carol"], "team-b": []},
        "usage": {"team-a": {"servers": 1, "gpu_milli": 250}}, "users": {"alice": {"team-a": {"servers": 1}}},
        "inventory": {"source": "configured", "nodes": [{"name": "n1", "cpu_milli": 1000, "memory_mib": 1024,
                                                         "gpus": [{"index": 0, "model": "A100-80GB", "workloads": [
                                                             {"kind": "server", "id": "server-1", "user": "alice",
                                                              "tenant": "team-a", "gpu_milli": 250}]}]}]},
        "queue": [{"id": 3, "name": "j", "user": "bob", "tenant": "team-a", "profile": "cpu", "priority": "high",
                   "queue_position": 1, "estimated_start": None, "pending_reason": "high_share"}],
        "running": [], "gpu_hours": [], "alarms": [{"level": "warning", "text": "w"}],
        "signups": {"pending": [{"name": "newbie", "email": "n@example.org"}], "approved": ["dora"],
                    "authorize_url": "/hub/authorize"},
        "other_groups": {"made-in-hub": ["erin"]}, "without_tenant": ["dora", "erin"],
    }
    data.update(over)
    return _env.get_template("admin.html").render(**data, base="/services/aistack/admin/",
                                                  plot=gpu_hours_svg(data["gpu_hours"]), xsrf=XSRF,
                                                  notice="saved", error="")


def parse_strict(text: str):
    return html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(text)


@pytest.mark.parametrize("viewer", [{"name": "admin", "admin": True, "tenants": []},
                                    {"name": "carol", "admin": False, "tenants": [{"name": "team-a", "admin": True}]}])
def test_members_rows_parse_without_broken_nesting(viewer):
    """Closes: the members row of the admin page is broken HTML."""
    text = page(me=viewer)
    doc = parse_strict(text)  # raises html5lib's ParseError on the first error
    rows = doc.findall(".//table[@data-members='team-a']//tr[@class='member']")
    assert [r.get("data-member") for r in rows] == ["team-a:alice", "team-a:bob", "team-a:carol", "team-a:zed"]
    for row in rows:
        cells = row.findall("td")
        assert len(cells) == 3, [c.text for c in cells]
        for form in row.iter("form"):  # every control is a whole form inside its cell
            assert form.find("button") is not None
    carol = rows[2].find("td[@class='roles']")
    assert {s.get("data-role") for s in carol.iter("span") if s.get("data-role")} == {"admin", "emergency"}
    # each quota row's inputs belong to a form (by the form attribute), never a form straddling cells
    for row in doc.findall(".//table[@class='quotas']//tr"):
        ids = {f.get("id") for f in row.iter("form")}
        assert all(i.get("form") in ids for i in row.iter("input") if i.get("form")), "input of another row's form"


def test_the_strict_parser_catches_a_form_inside_a_table_row():
    """Closes: the members row of the admin page is broken HTML (the check itself can fail)."""
    with pytest.raises(html5lib.html5parser.ParseError):
        parse_strict("<!doctype html><html><head><title>t</title></head><body><table><tr><form><td>x</td>"
                     "</form></tr></table></body></html>")
    with pytest.raises(html5lib.html5parser.ParseError):
        parse_strict("<!doctype html><html><head><title>t</title></head><body><p>a<form></form></p></body></html>")


def test_admin_controls_are_on_the_page():
    """Closes: no control to make someone a tenant admin; tenants cannot be created in any UI; a group made
    in JupyterHub is silently not a tenant; nothing tells an admin someone waits (rendered page)."""
    doc = parse_strict(page())
    buttons = {b.get("data-action") for b in doc.iter("button") if b.get("data-action")}
    assert {"grant-admin", "revoke-admin", "grant-high", "revoke-high", "grant-emergency"} <= buttons
    assert doc.find(".//form[@id='create-tenant']") is not None
    assert doc.find(".//form[@class='inline rename-tenant']") is not None
    assert doc.find(".//tr[@data-group='made-in-hub']//button").text == "make it a tenant"
    link = doc.find(".//a[@id='authorize-link']")
    assert link.get("href") == "/hub/authorize"
    assert doc.find(".//span[@data-signup='newbie']") is not None
    assert doc.find(".//input[@data-high-cap='team-a']").get("value") == "25.0"


def test_freed_slices_retention_and_a_failing_loop_are_shown():
    """Closes: the service frees slices and prunes finished jobs by itself: the admin page says so (the
    other helpers' ``GET allocations/released``, ``GET retention`` and ``/health``)."""
    doc = parse_strict(page(
        released={"released": [{"id": 7, "user": "ann", "tenant": "team-a", "server_name": "", "profile": "cpu",
                                "released_at": "2026-12-02T01:00:00Z",
                                "reason": "its server is not running in the hub (reconciliation)"}],
                  "last_reconciliation": {"at": "2026-12-02T01:00:00Z", "released": [7], "error": None}},
        retention={"finished_job_days": 30, "finished_jobs_kept": 4, "interval_s": 3600,
                   "last_run": {"at": "2026-12-02T00:00:00Z", "jobs_removed": 2, "notebooks_removed": 2,
                                "files_removed": 3, "bytes_freed": 2 * 1048576, "error": None},
                   "totals": {"jobs_removed": 5, "notebooks_removed": 5, "files_removed": 9, "bytes_freed": 0,
                              "runs": 3}},
        health={"ok": False, "failing": {"reason": "node gone", "since": "2026-12-02T01:01:00Z", "failures": 4}}))
    row = doc.find(".//tr[@data-released='7']")
    assert "reconciliation" in "".join(row.itertext()) and "(default)" in "".join(row.itertext())
    assert "freed 1 slice(s)" in "".join(doc.find(".//div[@id='released']").itertext())
    retention = " ".join("".join(doc.find(".//div[@id='retention']").itertext()).split())
    assert "kept 30 day(s)" in retention and "2 job(s), 2 notebook(s), 3 file(s) removed, 2.0 MiB freed" in retention
    assert doc.find(".//span[@data-retention='jobs_removed']").text == "5"
    assert "node gone" in "".join(doc.find(".//p[@id='health-failing']").itertext())
    # absent (an older service, or refused): said so, the page still renders
    doc = parse_strict(page(released=None, retention=None, health=None))
    assert doc.find(".//p[@id='health-failing']") is None
    assert "Not reported" in "".join(doc.find(".//div[@id='retention']").itertext())


def test_membership_sources_are_shown():
    """Closes: the admin page shows where a membership comes from (LDAP sign-in or by hand)."""
    from aistack_hub.admin.data import membership_sources
    from aistack_hub.ldap import LDAP_ADMINS, LDAP_MEMBERS

    src = {"team-a": membership_sources({LDAP_MEMBERS: ["alice"], LDAP_ADMINS: ["carol"]})}
    doc = parse_strict(page(sources=src))
    source = {s.get("data-source"): s.text for s in doc.iter("span") if s.get("data-source")}
    assert source["team-a:alice:member"] == "ldap" and source["team-a:bob:member"] == "manual"
    assert source["team-a:carol:admin"] == "ldap" and source["team-a:zed:admin"] == "manual"
    assert "team-a:zed:member" not in source  # zed administers team-a without being a member
