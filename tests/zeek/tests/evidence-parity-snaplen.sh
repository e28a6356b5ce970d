# @TEST-DOC: Under a short snap length (frames cut to 96 bytes, IPv4 and IPv6) Zeek's UDP sizes are the datagrams' lengths on the wire, as `msewatch evidence` takes them (docs/evidence.md): run-parity on snaplen variants of real captures made by msewatch.perturb.
#
# @TEST-REQUIRES: ls $TRACES/*.pcap >/dev/null 2>&1
# @TEST-REQUIRES: msewatch evidence --help >/dev/null 2>&1
# @TEST-REQUIRES: $PYTHON -c 'import msewatch.perturb' 2>/dev/null
#
# @TEST-EXEC: $PYTHON make-cuts.py $TRACES cut
# @TEST-EXEC: TRACES=$PWD/cut PARITY_CAPTURES="lsd_local dht_local tracker_udp utp_plain_libtorrent_transmission lsd_local_v6" $SCRIPTS/run-parity

@TEST-START-FILE make-cuts.py
import sys
from pathlib import Path

from msewatch.perturb import perturb_pcap

traces, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir()
for name in ("lsd_local", "dht_local", "tracker_udp", "utp_plain_libtorrent_transmission"):
    perturb_pcap(traces / f"{name}.pcap", out / f"{name}.pcap", "snaplen=96")
perturb_pcap(traces / "lsd_local.pcap", out / "lsd_local_v6.pcap", "ipv6+snaplen=96")
@TEST-END-FILE
