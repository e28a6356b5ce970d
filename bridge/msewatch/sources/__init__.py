"""Sources that feed the engine: all input I/O lives here (DESIGN.md section 2).

One module per way in: `zeek_ws` (live evidence from Zeek), `pcap` (offline pcap/pcapng files),
`eve` (Suricata EVE flow records). Nothing is imported here, so that using one source never loads
another's dependencies.
"""
