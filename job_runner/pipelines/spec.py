"""A pipeline file (``*.pipeline.yaml``) parsed and checked, with the line of each part for error messages.

The file (schema: ``pipeline.schema.json`` beside this module, served at ``GET pipelines/schema``)::

    name: train
    fail_fast: true          # Argo's failFast (default on): after a failure, start nothing new
    parallelism: 4           # tasks running at once in this run (optional)
    defaults: {profile: cpu, priority: normal, retries: 0}
    tasks:
      - name: prep
        notebook: prep.ipynb                      # in the owner's home
        parameters: {out: "{{run.dir}}/data.txt"}
        outputs: {files: {data: data.txt}}        # relative to the run folder
      - name: train
        notebook: train.ipynb
        depends: [prep]
        fan_out: {parameter: lr, values: [0.1, 0.2], parallelism: 2}
        parameters: {data: "{{tasks.prep.outputs.files.data}}"}

YAML is read by PyYAML's composer, whose node marks give each mapping key's and list item's line:
``SpecError.line`` is the line at fault (1-based).
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

import yaml

NAME = re.compile(r"^[a-z0-9]([-a-z0-9_]{0,38}[a-z0-9])?$")
TEMPLATE = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
PRIORITIES = ("low", "normal", "high", "emergency")
TASK_KEYS = {"name", "notebook", "depends", "parameters", "profile", "priority", "timeout_s", "retries",
             "fan_out", "outputs", "kernel_name"}
TOP_KEYS = {"name", "description", "fail_fast", "parallelism", "defaults", "tasks", "run_dir"}
MAX_TASKS = 200  # tasks of one file (a fan-out's instances are counted apart: max_fan_out)
MAX_FAN_OUT = 1000


class SpecError(ValueError):
    """A bad pipeline file: ``message`` and the 1-based ``line`` at fault (None: the file as a whole)."""

    def __init__(self, message: str, line: int | None = None, code: str = "bad_pipeline"):
        super().__init__(f"line {line}: {message}" if line else message)
        self.message = message
        self.line = line
        self.code = code


@dataclass
class Task:
    name: str
    notebook: str
    line: int
    depends: list = field(default_factory=list)
    parameters: dict = field(default_factory=dict)
    profile: str | None = None
    priority: str = "normal"
    timeout_s: float | None = None
    retries: int = 0
    kernel_name: str | None = None
    fan_out: dict | None = None  # {parameter, values, parallelism}
    outputs: dict = field(default_factory=dict)  # {"files": {name: relpath}, "parameters": [names]}
    lines: dict = field(default_factory=dict)  # field -> line

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "lines"}


@dataclass
class Pipeline:
    name: str
    tasks: dict  # name -> Task, in file order
    fail_fast: bool = True
    parallelism: int | None = None
    run_dir: str = "pipeline-runs"
    description: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "fail_fast": self.fail_fast, "parallelism": self.parallelism,
                "run_dir": self.run_dir, "description": self.description,
                "tasks": [t.to_dict() for t in self.tasks.values()]}

    @classmethod
    def from_dict(cls, d: dict) -> "Pipeline":
        tasks = {t["name"]: Task(**t) for t in d["tasks"]}
        return cls(d["name"], tasks, d.get("fail_fast", True), d.get("parallelism"), d.get("run_dir", "pipeline-runs"),
                   d.get("description", ""))

    def order(self) -> list:
        """Task names in a topological order (file order among ready ones)."""
        done, out = set(), []
        while len(out) < len(self.tasks):
            for name, t in self.tasks.items():
                if name not in done and all(d in done for d in t.depends):
                    done.add(name)
                    out.append(name)
                    break
        return out


# ------------------------------------------------------------------------------------------------ YAML
def _plain(node, lines: dict, path: tuple):
    """Python data of a composed node; ``lines[path]`` = the node's 1-based line."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out = {}
        for k, v in node.value:
            key = yaml.safe_load(yaml.serialize(k)) if not isinstance(k, yaml.ScalarNode) else k.value
            if not isinstance(key, str):
                raise SpecError(f"keys must be strings, not {key!r}", k.start_mark.line + 1)
            if key in out:
                raise SpecError(f"{key!r} appears twice", k.start_mark.line + 1)
            out[key] = _plain(v, lines, path + (key,))
            lines[path + (key,)] = k.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_plain(v, lines, path + (i,)) for i, v in enumerate(node.value)]
    return yaml.safe_load(yaml.serialize(node))


def load_yaml(text: str) -> tuple[object, dict]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise SpecError(f"not valid YAML: {getattr(e, 'problem', None) or e}",
                        mark.line + 1 if mark else None) from None
    if node is None:
        raise SpecError("the pipeline file is empty", 1)
    lines: dict = {}
    try:
        return _plain(node, lines, ()), lines
    except yaml.YAMLError as e:  # a node composed but not constructible: a tag such as "!" or "!python/..."
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        raise SpecError(f"not valid YAML: {getattr(e, 'problem', None) or e}",
                        mark.line + 1 if mark else None) from None


# ------------------------------------------------------------------------------------------ validation
def _rel_path(value, what: str, line) -> str:
    """A relative POSIX path that stays inside its folder."""
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise SpecError(f"{what} must be a non-empty relative path", line)
    bare = TEMPLATE.sub("x", value)
    norm = posixpath.normpath(bare)
    if bare.startswith("/") or norm == ".." or norm.startswith("../") or "\\" in bare:
        raise SpecError(f"{what} {value!r} escapes the run folder (absolute or '..')", line, "path_escapes")
    return value


def _task(raw, i: int, lines: dict, defaults: dict) -> Task:
    base = ("tasks", i)
    ln = lambda *k: lines.get(base + k, lines.get(base))  # noqa: E731
    if not isinstance(raw, dict):
        raise SpecError("each task is a mapping with at least 'name' and 'notebook'", ln())
    extra = sorted(set(raw) - TASK_KEYS)
    if extra:
        raise SpecError(f"unknown task field {extra[0]!r} (known: {', '.join(sorted(TASK_KEYS))})", ln(extra[0]))
    name = raw.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise SpecError(f"task name {name!r} must be lower-case letters, digits, '-' or '_' (1-40)", ln("name"))
    nb = raw.get("notebook")
    if not isinstance(nb, str) or not nb.endswith(".ipynb"):
        raise SpecError(f"task {name!r}: 'notebook' must be the path of an .ipynb in your home", ln("notebook") or ln())
    _rel_path(nb, f"task {name!r}: notebook", ln("notebook"))
    merged = {**defaults, **raw}
    depends = raw.get("depends", [])
    if isinstance(depends, str):
        depends = [d.strip() for d in re.split(r"&&|,", depends) if d.strip()]
    if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
        raise SpecError(f"task {name!r}: 'depends' is a list of task names (or 'a && b')", ln("depends"))
    params = merged.get("parameters", {}) or {}
    if not isinstance(params, dict):
        raise SpecError(f"task {name!r}: 'parameters' is a mapping", ln("parameters"))
    priority = merged.get("priority", "normal")
    if priority not in PRIORITIES:
        raise SpecError(f"task {name!r}: priority must be one of {', '.join(PRIORITIES)}", ln("priority"))
    retries = merged.get("retries", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
        raise SpecError(f"task {name!r}: 'retries' is an integer 0..10", ln("retries"))
    timeout = merged.get("timeout_s")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise SpecError(f"task {name!r}: 'timeout_s' is a positive number of seconds", ln("timeout_s"))
    profile = merged.get("profile")
    if not isinstance(profile, str) or not profile:
        raise SpecError(f"task {name!r}: 'profile' is required (here or in 'defaults')", ln("profile") or ln())
    fan = raw.get("fan_out")
    if fan is not None:
        if not isinstance(fan, dict) or set(fan) - {"parameter", "values", "parallelism"}:
            raise SpecError(f"task {name!r}: fan_out is {{parameter, values, parallelism}}", ln("fan_out"))
        values = fan.get("values")
        if not isinstance(fan.get("parameter"), str) or not isinstance(values, list) or not values:
            raise SpecError(f"task {name!r}: fan_out needs 'parameter' and a non-empty list 'values'", ln("fan_out"))
        if len(values) > MAX_FAN_OUT:
            raise SpecError(f"task {name!r}: fan_out has {len(values)} values; at most {MAX_FAN_OUT}", ln("fan_out"),
                            "too_large")
        par = fan.get("parallelism")
        if par is not None and (isinstance(par, bool) or not isinstance(par, int) or par < 1):
            raise SpecError(f"task {name!r}: fan_out.parallelism is a positive integer", ln("fan_out"))
        fan = {"parameter": fan["parameter"], "values": values, "parallelism": par}
    outputs = raw.get("outputs") or {}
    if not isinstance(outputs, dict) or set(outputs) - {"files", "parameters"}:
        raise SpecError(f"task {name!r}: outputs is {{files: {{name: path}}, parameters: [names]}}", ln("outputs"))
    files = outputs.get("files") or {}
    if not isinstance(files, dict):
        raise SpecError(f"task {name!r}: outputs.files maps a name to a path in the run folder", ln("outputs"))
    for fname, path in files.items():
        _rel_path(path, f"task {name!r}: output file {fname!r}", lines.get(base + ("outputs", "files", fname)))
    oparams = outputs.get("parameters") or []
    if not isinstance(oparams, list) or not all(isinstance(p, str) for p in oparams):
        raise SpecError(f"task {name!r}: outputs.parameters is a list of names", ln("outputs"))
    kernel = merged.get("kernel_name")
    field_lines = {k: lines.get(base + (k,)) for k in raw}
    return Task(name=name, notebook=nb, line=ln(), depends=depends, parameters=params, profile=profile,
                priority=priority, timeout_s=timeout, retries=retries, kernel_name=kernel, fan_out=fan,
                outputs={"files": dict(files), "parameters": list(oparams)}, lines=field_lines)


def _check_graph(tasks: dict) -> None:
    for t in tasks.values():
        for d in t.depends:
            if d not in tasks:
                raise SpecError(f"task {t.name!r} depends on unknown task {d!r}", t.lines.get("depends") or t.line,
                                "unknown_task")
            if d == t.name:
                raise SpecError(f"task {t.name!r} depends on itself", t.lines.get("depends") or t.line, "cycle")
    # cycles: depth-first search, reporting the cycle's path at the first task of it in the file
    state: dict = {}

    def visit(name, path):
        state[name] = 1
        for d in tasks[name].depends:
            if state.get(d) == 1:
                cycle = path[path.index(d):] + [d]
                t = tasks[cycle[0]]
                raise SpecError("the tasks' depends make a cycle: " + " -> ".join(cycle),
                                t.lines.get("depends") or t.line, "cycle")
            if d not in state:
                visit(d, path + [d])
        state[name] = 2

    for name in tasks:
        if name not in state:
            visit(name, [name])


def ancestors(tasks: dict, name: str) -> set:
    out, todo = set(), list(tasks[name].depends)
    while todo:
        d = todo.pop()
        if d not in out:
            out.add(d)
            todo += tasks[d].depends
    return out


def _check_templates(tasks: dict) -> None:
    """``{{tasks.X.outputs.(files|parameters).Y}}`` must name an upstream task and an output it declares."""
    for t in tasks.values():
        up = ancestors(tasks, t.name)
        for pname, value in t.parameters.items():
            for expr in TEMPLATE.findall(value) if isinstance(value, str) else []:
                line = t.lines.get("parameters") or t.line
                parts = expr.split(".")
                if parts[0] in ("run", "item", "index") and expr in ("run.dir", "run.id", "item", "index"):
                    if expr in ("item", "index") and not t.fan_out:
                        raise SpecError(f"task {t.name!r}: {{{{{expr}}}}} is only for a fan_out task", line)
                    continue
                if len(parts) != 5 or parts[0] != "tasks" or parts[2] != "outputs" or parts[3] not in ("files", "parameters"):
                    raise SpecError(f"task {t.name!r}, parameter {pname!r}: unknown template {{{{{expr}}}}} (known: "
                                    "run.dir, run.id, item, index, tasks.<task>.outputs.files|parameters.<name>)", line)
                src = parts[1]
                if src not in tasks:
                    raise SpecError(f"task {t.name!r}, parameter {pname!r}: unknown task {src!r}", line, "unknown_task")
                if src not in up:
                    raise SpecError(f"task {t.name!r}, parameter {pname!r} uses {src!r}'s outputs but does not "
                                    f"depend on it", line)
                declared = tasks[src].outputs["files"] if parts[3] == "files" else tasks[src].outputs["parameters"]
                if parts[4] not in declared:
                    raise SpecError(f"task {t.name!r}, parameter {pname!r}: task {src!r} declares no output "
                                    f"{parts[3][:-1]} {parts[4]!r}", line)


def parse_pipeline(text: str, max_tasks: int = MAX_TASKS) -> Pipeline:
    """The pipeline of a YAML (or JSON) text, or ``SpecError`` with the line at fault."""
    data, lines = load_yaml(text)
    if not isinstance(data, dict):
        raise SpecError("a pipeline file is a mapping with 'name' and 'tasks'", 1)
    extra = sorted(set(data) - TOP_KEYS)
    if extra:
        raise SpecError(f"unknown field {extra[0]!r} (known: {', '.join(sorted(TOP_KEYS))})", lines.get((extra[0],)))
    name = data.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise SpecError(f"'name' {name!r} must be lower-case letters, digits, '-' or '_' (1-40)", lines.get(("name",), 1))
    fail_fast = data.get("fail_fast", True)
    if not isinstance(fail_fast, bool):
        raise SpecError("'fail_fast' is true or false", lines.get(("fail_fast",)))
    par = data.get("parallelism")
    if par is not None and (isinstance(par, bool) or not isinstance(par, int) or par < 1):
        raise SpecError("'parallelism' is a positive integer", lines.get(("parallelism",)))
    run_dir = _rel_path(data.get("run_dir", "pipeline-runs"), "run_dir", lines.get(("run_dir",)))
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict) or set(defaults) - {"profile", "priority", "timeout_s", "retries", "kernel_name",
                                                          "parameters"}:
        raise SpecError("'defaults' may set profile, priority, timeout_s, retries, kernel_name, parameters",
                        lines.get(("defaults",)))
    raw_tasks = data.get("tasks")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        raise SpecError("'tasks' is a non-empty list", lines.get(("tasks",), 1))
    if len(raw_tasks) > max_tasks:
        raise SpecError(f"{len(raw_tasks)} tasks; at most {max_tasks}", lines.get(("tasks",)), "too_large")
    tasks: dict = {}
    for i, raw in enumerate(raw_tasks):
        t = _task(raw, i, lines, defaults)
        if t.name in tasks:
            raise SpecError(f"two tasks are named {t.name!r}", t.lines.get("name") or t.line)
        tasks[t.name] = t
    _check_graph(tasks)
    _check_templates(tasks)
    return Pipeline(name, tasks, fail_fast, par, run_dir, str(data.get("description") or ""))
