"""The profile catalog: what users pick ("1/4 A100 · 20 GB", "1x T4", "CPU only")."""
from __future__ import annotations

from dataclasses import dataclass, field

from .slices import SliceRequest


@dataclass(frozen=True)
class Profile:
    """A named slice request offered to some tenants (``"*"`` = all)."""

    slug: str
    display_name: str
    description: str
    request: SliceRequest
    image: str | None = None
    tenants: tuple = ("*",)
    extra: dict = field(default_factory=dict)

    def offered_to(self, tenant: str) -> bool:
        return "*" in self.tenants or tenant in self.tenants

    def to_dict(self) -> dict:
        return {"slug": self.slug, "display_name": self.display_name, "description": self.description,
                "request": self.request.to_dict(), "image": self.image, "tenants": list(self.tenants),
                "extra": dict(self.extra)}


class ProfileCatalog:
    """Ordered profiles by slug."""

    def __init__(self, profiles: list[Profile]):
        self.profiles = list(profiles)
        self._by_slug = {}
        for p in self.profiles:
            if p.slug in self._by_slug:
                raise ValueError(f"duplicate profile slug {p.slug!r}")
            self._by_slug[p.slug] = p

    def __iter__(self):
        return iter(self.profiles)

    def __len__(self):
        return len(self.profiles)

    def get(self, slug: str) -> Profile:
        """The profile, or KeyError if unknown."""
        try:
            return self._by_slug[slug]
        except KeyError:
            raise KeyError(f"unknown profile {slug!r}") from None

    def for_tenant(self, name: str) -> list[Profile]:
        return [p for p in self.profiles if p.offered_to(name)]

    @classmethod
    def from_config(cls, items: list[dict]) -> "ProfileCatalog":
        """Items: ``{slug, display_name, description, request: {...SliceRequest}, image, tenants, extra}``;
        the request fields may also sit at the top level."""
        out = []
        req_keys = {"kind", "gpus", "gpu_milli", "gpu_mem_mib", "mig_profile", "gpu_models", "cpu_milli",
                    "memory_mib", "sharing"}
        for item in items:
            item = dict(item)
            if "slug" not in item:
                raise ValueError(f"profile without slug: {item}")
            req = dict(item.pop("request", {}))
            for k in list(item):
                if k in req_keys:
                    req[k] = item.pop(k)
            unknown = set(item) - {"slug", "display_name", "description", "image", "tenants", "extra"}
            if unknown:
                raise ValueError(f"profile {item['slug']!r}: unknown keys {sorted(unknown)}")
            out.append(Profile(item["slug"], item.get("display_name", item["slug"]), item.get("description", ""),
                               SliceRequest.from_dict(req), item.get("image"), tuple(item.get("tenants", ("*",))),
                               dict(item.get("extra", {}))))
        return cls(out)

    def to_config(self) -> list[dict]:
        return [p.to_dict() for p in self.profiles]
