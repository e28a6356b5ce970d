"""Reading flow verdict dicts: the fields consumers (ECS output, EVE annotation, the report)
need, in one place.

Contract 1 (docs/architecture.md): a flow verdict carries `families_own` (families from
the flow's own evidence), `families_context` (host_context / peer_cache) and `families`
(their union); `protocol` is always a string, "unknown" when the detectors recognised
nothing. Verdicts written before that contract (or by an older bridge) lack the two lists
and may carry `protocol: null`. The fallback for them lives here and only here:
families_context = families ∩ CONTEXT_FAMILIES, families_own = the rest, protocol None/""
-> "unknown". Remove `_legacy_*` once every producer writes the contract.

`client_family` names the BitTorrent client when the verdict saw a peer_id prefix
(`client=-TR3000-` reasons from the tracker and peer-wire detectors), by the Azureus-style
two-letter codes of BEP 20 (https://www.bittorrent.org/beps/bep_0020.html).
"""

from __future__ import annotations

UNKNOWN_PROTOCOL = "unknown"
#: families that come from context, not from the flow's own bytes (evidence.FAMILY_HOST,
#: evidence.FAMILY_PEER); only used for verdicts that predate `families_context`
CONTEXT_FAMILIES = ("host_context", "peer_cache")

#: BEP 20 Azureus-style client codes (-XXnnnn-) of the clients a sensor meets most; others
#: give "other"
_AZUREUS_CODES = {
    "AZ": "azureus",
    "BC": "bitcomet",
    "BI": "biglybt",
    "BT": "bittorrent",
    "DE": "deluge",
    "FD": "free_download_manager",
    "KT": "ktorrent",
    "LT": "libtorrent_rasterbar",
    "lt": "libtorrent_rakshasa",
    "qB": "qbittorrent",
    "TR": "transmission",
    "UM": "utorrent_mac",
    "UT": "utorrent",
    "WW": "webtorrent",
    "XL": "xunlei",
}


def protocol(v: dict) -> str:
    """The verdict's protocol; never None ("unknown" when nothing was recognised)."""
    p = v.get("protocol")
    return p if isinstance(p, str) and p else UNKNOWN_PROTOCOL


def families(v: dict) -> tuple[list[str], list[str]]:
    """(families_own, families_context) of a flow verdict."""
    own, ctx = v.get("families_own"), v.get("families_context")
    if isinstance(own, list) and isinstance(ctx, list):
        return [str(f) for f in own], [str(f) for f in ctx]
    return _legacy_families(v)


def _legacy_families(v: dict) -> tuple[list[str], list[str]]:
    fams = [str(f) for f in v.get("families") or ()]
    return [f for f in fams if f not in CONTEXT_FAMILIES], [f for f in fams if f in CONTEXT_FAMILIES]


def client_prefix(v: dict) -> str | None:
    """The peer_id prefix the detectors read (`client=` reason), if any."""
    c = v.get("client")
    if isinstance(c, str) and c:
        return c
    for r in v.get("reasons") or ():
        if isinstance(r, str) and r.startswith("client="):
            return r[7:] or None
    return None


def client_family(v: dict) -> str | None:
    """BitTorrent client family from the peer_id prefix (BEP 20), None without a prefix."""
    fam = v.get("client_family")
    if isinstance(fam, str) and fam:
        return fam
    prefix = client_prefix(v)
    if prefix is None:
        return None
    if len(prefix) >= 8 and prefix[0] == "-" and prefix[7] == "-":
        return _AZUREUS_CODES.get(prefix[1:3], "other")
    if prefix.startswith("A2-"):
        return "aria2"
    if prefix[:1] == "M" and prefix[1:2].isdigit():
        return "bittorrent_mainline"
    return "other"
