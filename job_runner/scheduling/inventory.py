"""The GPU pool: nodes with CPU, memory and GPUs; loaded from config or an Alibaba trace node list."""
from __future__ import annotations

import csv
from dataclasses import dataclass, field

from .models import gpu_model


@dataclass
class GPU:
    """One physical GPU of a node. ``memory_mib`` 0 means unknown (no memory-cap accounting)."""

    index: int
    model: str
    memory_mib: int = 0
    uuid: str | None = None
    mig_enabled: bool = False

    def __post_init__(self):
        if not self.memory_mib:
            self.memory_mib = gpu_model(self.model).memory_mib
        if self.mig_enabled and gpu_model(self.model).mig is None:
            raise ValueError(f"GPU model {self.model!r} does not support MIG")


@dataclass
class Node:
    """A machine: allocatable CPU (milli-cores), memory (MiB) and GPUs."""

    name: str
    cpu_milli: int
    memory_mib: int
    gpus: list[GPU] = field(default_factory=list)
    labels: dict = field(default_factory=dict)
    healthy: bool = True


class Inventory:
    """An ordered list of nodes (order matters to first-fit)."""

    def __init__(self, nodes: list[Node]):
        names = [n.name for n in nodes]
        if len(set(names)) != len(names):
            raise ValueError("node names must be unique")
        self.nodes = list(nodes)
        self.by_name = {n.name: i for i, n in enumerate(self.nodes)}

    def __len__(self) -> int:
        return len(self.nodes)

    def node(self, name: str) -> Node:
        return self.nodes[self.by_name[name]]

    @property
    def gpu_count(self) -> int:
        return sum(len(n.gpus) for n in self.nodes)

    @property
    def models(self) -> list[str]:
        return sorted({g.model for n in self.nodes for g in n.gpus})

    @classmethod
    def from_alibaba_csv(cls, path: str) -> "Inventory":
        """Read ``sn,cpu_milli,memory_mib,gpu,model`` (cluster-trace-gpu-v2023 node list)."""
        nodes = []
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = {"sn", "cpu_milli", "memory_mib", "gpu"} - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"{path}: not an Alibaba node list, missing columns {sorted(missing)}")
            for row in reader:
                n_gpu = int(row["gpu"] or 0)
                model = (row.get("model") or "").strip() or "unknown"
                nodes.append(Node(row["sn"], int(row["cpu_milli"]), int(row["memory_mib"]),
                                  [GPU(i, model) for i in range(n_gpu)]))
        return cls(nodes)

    @classmethod
    def from_config(cls, items: list[dict]) -> "Inventory":
        """Build from config dicts.

        Each item: ``{name, cpu_milli, memory_mib, gpus: N | [{model, memory_mib, uuid, mig_enabled}],
        gpu_model: M (when gpus is a count), mig_enabled: bool, labels: {}, healthy: true, count: K}``;
        ``count`` > 1 expands to nodes ``name-0 .. name-(K-1)``.
        """
        nodes = []
        for item in items:
            item = dict(item)
            unknown = set(item) - {"name", "cpu_milli", "memory_mib", "gpus", "gpu_model", "mig_enabled",
                                   "labels", "healthy", "count"}
            if unknown:
                raise ValueError(f"inventory entry {item.get('name')!r}: unknown keys {sorted(unknown)}")
            if "name" not in item:
                raise ValueError("inventory entry without name")
            count = int(item.get("count", 1))
            for k in range(count):
                name = item["name"] if count == 1 else f"{item['name']}-{k}"
                spec = item.get("gpus", 0)
                if isinstance(spec, int):
                    gpus = [GPU(i, item.get("gpu_model", "unknown"), mig_enabled=bool(item.get("mig_enabled")))
                            for i in range(spec)]
                else:
                    gpus = [GPU(i, g["model"], int(g.get("memory_mib", 0)), g.get("uuid"),
                                bool(g.get("mig_enabled", False))) for i, g in enumerate(spec)]
                nodes.append(Node(name, int(item.get("cpu_milli", 0)), int(item.get("memory_mib", 0)), gpus,
                                  dict(item.get("labels", {})), bool(item.get("healthy", True))))
        return cls(nodes)

    def to_config(self) -> list[dict]:
        return [
            {"name": n.name, "cpu_milli": n.cpu_milli, "memory_mib": n.memory_mib, "labels": n.labels,
             "healthy": n.healthy,
             "gpus": [{"model": g.model, "memory_mib": g.memory_mib, "uuid": g.uuid,
                       "mig_enabled": g.mig_enabled} for g in n.gpus]}
            for n in self.nodes
        ]
