"""Node addresses of a site file → the server's ``NodeId``s, resolved against the server's namespace array
on every (re)connect, because a server may renumber its namespaces when it restarts (adr/0150).

Three forms:
- ``ns=<index>;<id>``: taken as written (the index is the server's, today);
- ``nsu=<namespace URI>;<id>``: the URI is looked up in the server's namespace array; a URI the server
  does not have is an ``AddressError``, never a fallback to namespace 0;
- a browse path from the root, ``/Objects/2:Boiler7/2:Pressure`` or a list of segments. A segment is
  ``<index>:<BrowseName>``, ``nsu=<URI>;<BrowseName>`` (list form only: a URI holds slashes) or a bare
  ``<BrowseName>`` (namespace 0). The server translates the path; a path that names nothing is refused.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from asyncua import ua

from .config import describe, split_path

_SEGMENT = re.compile(r"^(?:(?P<idx>\d+):|nsu=(?P<uri>[^;]+);)?(?P<name>.+)$")


class AddressError(ValueError):
    """The server cannot resolve this address (unknown namespace URI, no such browse path)."""


def namespace_index(uri: str, namespaces: Sequence[str]) -> int:
    try:
        return list(namespaces).index(uri)
    except ValueError:
        raise AddressError(f"the server has no namespace {uri!r}") from None


def resolve_node_id(text: str, namespaces: Sequence[str]) -> ua.NodeId:
    """A node id string → a NodeId in the server's current numbering."""
    try:
        nid = ua.NodeId.from_string(text)
    except Exception as exc:
        raise AddressError(f"{text!r} is not a node id: {exc}") from None
    uri = getattr(nid, "NamespaceUri", None)
    if uri:
        return ua.NodeId(nid.Identifier, namespace_index(uri, namespaces), nid.NodeIdType)
    return ua.NodeId(nid.Identifier, nid.NamespaceIndex, nid.NodeIdType)


def qualified_segments(path: str | Sequence[str], namespaces: Sequence[str]) -> list[ua.QualifiedName]:
    """The path's browse names in the server's current numbering."""
    out = []
    for seg in split_path(path):
        m = _SEGMENT.match(seg)
        if m is None:
            raise AddressError(f"browse path segment {seg!r} is empty")
        idx = int(m["idx"]) if m["idx"] is not None else \
            namespace_index(m["uri"], namespaces) if m["uri"] is not None else 0
        out.append(ua.QualifiedName(m["name"], idx))
    if not out:
        raise AddressError("the browse path is empty")
    return out


async def resolve(client, node_id: str | None, browse_path: str | Sequence[str] | None,
                  namespaces: Sequence[str]) -> ua.NodeId:
    """The NodeId an address names on this server now; ``AddressError`` when it names nothing."""
    if node_id is not None:
        return resolve_node_id(node_id, namespaces)
    segments = qualified_segments(browse_path or [], namespaces)
    try:
        node = await client.nodes.root.get_child(segments)
    except ua.UaStatusCodeError as exc:
        raise AddressError(f"browse path {describe(None, browse_path)} names no node: {exc}") from None
    return node.nodeid
