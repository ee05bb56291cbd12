"""Tool catalog: what each tool can do and which of its arguments name a target.

A deployment describes its tools as data (JSON). Capability classes:
  read      reads data, changes nothing
  write     changes state inside the system
  send      sends data out of the system (mail, messages, web posts)
  money     moves money
  delete    destroys data
  identity  changes identity, credentials or permissions
A tool is side-effecting when it has any capability other than `read`. A tool marked
`open_world` reaches outside the system (a web fetch): even a read there can leak data through
its target, so its targets are checked like a side effect's.

Unknown tools get the conservative default: side-effecting (`write`), so a tool nobody described
is never treated as harmless. An entry may give MCP tool annotations instead of capabilities
(see `from_mcp_annotations`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError

CAPABILITIES = ("read", "write", "send", "money", "delete", "identity")


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    capabilities: frozenset[str]
    targets: tuple[str, ...] = ()  # argument names that name a target (recipient, url, path...)
    known: bool = True
    open_world: bool = False       # reaches outside the system (MCP openWorldHint): a web fetch
    # Derived once: they are read several times for every action.
    side_effecting: bool = field(init=False, compare=False)   # any capability beyond read
    watched: bool = field(init=False, compare=False)   # a side effect or an open-world call:
    #                                                    its targets are checked

    def __post_init__(self):
        side_effecting = bool(self.capabilities - {"read"})
        object.__setattr__(self, "side_effecting", side_effecting)
        object.__setattr__(self, "watched", side_effecting or self.open_world)


DEFAULT_CAPABILITIES = frozenset({"write"})


class Catalog:
    def __init__(self, tools: dict[str, ToolSpec] | None = None,
                 default: frozenset[str] = DEFAULT_CAPABILITIES):
        self.tools = dict(tools or {})
        self.default = default
        self._unknown: dict[str, ToolSpec] = {}

    def get(self, name: str) -> ToolSpec:
        spec = self.tools.get(name)
        if spec is None:
            spec = self._unknown.get(name)
            if spec is None:
                spec = ToolSpec(name, self.default, (), known=False)
                if len(self._unknown) < 10_000:
                    self._unknown[name] = spec
        return spec

    @classmethod
    def from_dict(cls, data: dict) -> Catalog:
        tools = {}
        for name, entry in data.get("tools", {}).items():
            if "capabilities" not in entry and "annotations" in entry:
                entry = {**entry, **from_mcp_annotations(entry["annotations"])}
            caps = frozenset(entry.get("capabilities", DEFAULT_CAPABILITIES))
            bad = caps - set(CAPABILITIES)
            if bad:
                raise ValueError(f"tool {name!r}: unknown capabilities {sorted(bad)}")
            tools[name] = ToolSpec(name, caps, tuple(entry.get("targets", ())),
                                   open_world=bool(entry.get("open_world", False)))
        default = frozenset(data.get("default", {}).get("capabilities", DEFAULT_CAPABILITIES))
        return cls(tools, default)

    @classmethod
    def load(cls, path: str | Path) -> Catalog:
        try:
            data = json.loads(Path(path).read_bytes())
        except json.JSONDecodeError as exc:
            raise InputError(path, f"not JSON: {exc}", exc.lineno) from None
        except UnicodeDecodeError as exc:
            raise InputError(path, f"not UTF-8 text: {exc}") from None
        except RecursionError:  # the stdlib parser recurses once per level of nesting
            raise InputError(path, "nested too deeply") from None
        if not isinstance(data, dict):
            raise InputError(path, "a catalog must be a JSON object")
        try:
            return cls.from_dict(data)
        except (ValueError, TypeError, AttributeError) as exc:
            raise InputError(path, f"not a valid catalog: {exc}") from None


def from_mcp_annotations(annotations: dict) -> dict:
    """Capabilities from MCP tool annotations, when a catalog entry has no capabilities of its
    own. MCP's defaults are the cautious ones: a tool is not read-only, is destructive, and
    reaches the open world unless its annotations say otherwise.
      readOnlyHint true            -> read
      destructiveHint false        -> write (changes state, destroys nothing)
      otherwise                    -> write + delete
      openWorldHint (default true) -> open_world, and send for a tool that is not read-only
    """
    read_only = annotations.get("readOnlyHint", False) is True
    open_world = annotations.get("openWorldHint", True) is not False
    if read_only:
        caps = ["read"]
    elif annotations.get("destructiveHint", True) is False:
        caps = ["write"]
    else:
        caps = ["write", "delete"]
    if open_world and not read_only:
        caps.append("send")
    return {"capabilities": caps, "open_world": open_world}
