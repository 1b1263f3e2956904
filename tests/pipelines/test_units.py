"""The pure parts: the file parser's line numbers, the DAG state machine, schedule slots and policies."""
from __future__ import annotations

import datetime as dt

import pytest

from job_runner.pipelines import SpecError, expand, parse_pipeline, retry, step
from job_runner.pipelines.values import reported_values, render
from job_runner.schedules import cron_slots, decide, window_slots
from job_runner.scheduling.tenants import TimeWindow

FAN = """\
name: p
fail_fast: {ff}
defaults: {{profile: cpu}}
tasks:
  - name: a
    notebook: a.ipynb
  - name: b
    notebook: b.ipynb
    depends: [a]
    fan_out: {{parameter: x, values: [1, 2, 3], parallelism: 2}}
  - name: c
    notebook: c.ipynb
    depends: [b]
  - name: d
    notebook: d.ipynb
    depends: [a]
"""


def _apply(p, nodes, cancelled=False):
    plan = step(p, nodes, cancelled)
    for k in plan.start:
        nodes[k].state, nodes[k].attempts = "queued", nodes[k].attempts + 1
    for k, why in plan.skip.items():
        nodes[k].state, nodes[k].message = "skipped", why
    return plan


def test_fan_out_parallelism_fail_fast_off_and_retry_of_a_task():
    p = parse_pipeline(FAN.format(ff="false"))
    nodes = {n.key: n for n in expand(p)}
    assert _apply(p, nodes).start == ["a"]
    nodes["a"].state = "succeeded"
    assert _apply(p, nodes).start == ["b[0]", "b[1]", "d"]  # the fan-out's parallelism is 2
    nodes["b[0]"].state = "failed"
    plan = _apply(p, nodes)  # fail_fast off: the other branches go on, c will never run
    assert plan.start == ["b[2]"] and plan.skip == {"c": "upstream task 'b' did not succeed"}
    for k in ("b[1]", "b[2]", "d"):
        nodes[k].state = "succeeded"
    assert _apply(p, nodes).state == "failed"
    assert retry(p, nodes, "b") == ["b[0]"] and nodes["c"].state == "waiting"
    assert _apply(p, nodes).start == ["b[0]"]
    nodes["b[0]"].state = "succeeded"
    assert _apply(p, nodes).start == ["c"]
    nodes["c"].state = "succeeded"
    assert _apply(p, nodes).state == "succeeded"


def test_retries_go_on_after_fail_fast_and_cancel_skips():
    p = parse_pipeline(FAN.format(ff="true").replace("    depends: [a]\n    fan_out", "    retries: 1\n    depends: [a]\n    fan_out"))
    nodes = {n.key: n for n in expand(p)}
    _apply(p, nodes)
    nodes["a"].state = "succeeded"
    _apply(p, nodes)
    nodes["d"].state = "failed"  # d has no retries: the run halts (fail-fast)
    nodes["b[0]"].state = "failed"  # b[0] has one retry left: it is not failed yet, it runs again
    plan = _apply(p, nodes)
    assert plan.start == ["b[0]"] and plan.state == "running"
    plan = _apply(p, nodes, cancelled=True)
    assert set(plan.skip) == {"b[2]", "c"} and plan.state == "running"  # b[0], b[1] still running


@pytest.mark.parametrize("text,line,code", [
    ("name: x\ntasks:\n  - name: a\n    notebook: a.ipynb\n    profile: cpu\n    bogus: 1\n", 6, "bad_pipeline"),
    ("name: x\ndefaults: {profile: cpu}\ntasks:\n  - name: a\n    notebook: a.ipynb\n  - name: a\n    notebook: b.ipynb\n", 6, "bad_pipeline"),
    ("name: x\ndefaults: {profile: cpu}\ntasks:\n  - name: a\n    notebook: a.ipynb\n    parameters: {p: '{{tasks.a.outputs.files.f}}'}\n", 6, "bad_pipeline"),
    ("name: x\ndefaults: {profile: cpu}\nrun_dir: /etc\ntasks:\n  - name: a\n    notebook: a.ipynb\n", 3, "path_escapes"),
])
def test_spec_errors_name_the_line(text, line, code):
    with pytest.raises(SpecError) as e:
        parse_pipeline(text)
    assert (e.value.line, e.value.code) == (line, code), e.value


def test_values_and_templates():
    nb = {"cells": [{"outputs": [{"data": {"application/vnd.aistack.outputs+json": {"acc": 1}}},
                                 {"data": {"application/vnd.aistack.outputs+json": {"acc": 2, "n": 3}}}]}]}
    import json
    assert reported_values(json.dumps(nb)) == {"acc": 2, "n": 3}
    ctx = {"run_dir": "r/1", "run_id": 1, "item": None, "index": None,
           "outputs": {"t": [(0, {"files": {}, "parameters": {"a": 1}}), (1, {"files": {}, "parameters": {"a": 2}})]}}
    assert render("{{tasks.t.outputs.parameters.a}}", ctx) == [1, 2]
    assert render("{{run.dir}}/x", ctx) == "r/1/x"


def test_cron_in_a_time_zone_across_dst():
    # 02:30 every day in Berlin: on 2026-03-29 (spring forward) croniter moves it; slots are UTC
    got, _ = cron_slots("30 2 * * *", "Europe/Berlin", dt.datetime(2026, 3, 27, 12), dt.datetime(2026, 3, 31, 12), 10)
    assert got[0] == dt.datetime(2026, 3, 28, 1, 30) and got[-1] == dt.datetime(2026, 3, 31, 0, 30)


def test_window_openings_and_holidays():
    nights = (TimeWindow.parse("mon-fri 20-6"),)
    got, _ = window_slots(nights, {dt.date(2026, 12, 5)}, "UTC", dt.datetime(2026, 12, 4, 12),
                          dt.datetime(2026, 12, 7, 23), 10)
    # Friday 20:00 (the night runs into Saturday 06:00: the holiday Saturday keeps it open), Monday 20:00
    assert got == [dt.datetime(2026, 12, 4, 20), dt.datetime(2026, 12, 7, 20)]


def test_catch_up_policies():
    now = dt.datetime(2026, 1, 1, 0, 0, 10)
    due = [now - dt.timedelta(seconds=s) for s in (6, 5, 4, 0)]
    assert decide(due, now, "none", 10, 1).fire == [due[-1]]
    assert decide(due, now, "latest", 10, 1).fire == [due[2], due[3]]
    assert decide(due, now, "all", 10, 1).fire == due
    assert decide(due, now, "all", 2, 1).fire == due[-2:] and len(decide(due, now, "all", 2, 1).skip) == 2
