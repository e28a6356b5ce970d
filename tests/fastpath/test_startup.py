"""Start-up of `msewatch analyze`: modules it does not need for a pcap are not imported
(docs/performance.md measures what each costs), and the constants written out in their place
still agree with the library they came from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"

PROBE = """
import json, sys
from msewatch.cli import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "modules": sorted(m for m in ("dpkt", "yaml", "jinja2", "tqdm", "multiprocessing")
                                                if m in sys.modules)}))
"""


def imported_by(*args):
    p = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.splitlines()[-1])


def test_analyze_of_a_pcap_imports_no_dpkt_yaml_jinja2_tqdm_or_multiprocessing(tmp_path):
    out = imported_by("analyze", CORPUS / "dns.pcap", "-q", "-o", tmp_path / "v.jsonl", "--no-progress")
    assert out == {"rc": 0, "modules": []}


def test_a_config_file_still_loads_yaml_and_pcapng_still_loads_dpkt(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("budget:\n  max_packets: 16\n")
    import dpkt

    ng = tmp_path / "x.pcapng"
    with open(CORPUS / "dns.pcap", "rb") as fi, open(ng, "wb") as fo:
        r = dpkt.pcap.Reader(fi)
        w = dpkt.pcapng.Writer(fo, linktype=r.datalink())
        for ts, buf in r:
            w.writepkt(buf, ts=ts)
    out = imported_by("analyze", ng, "-c", cfg, "-q", "-o", tmp_path / "v.jsonl", "--no-progress")
    assert out == {"rc": 0, "modules": ["dpkt", "yaml"]}


def test_the_format_magic_numbers_are_dpkts():
    from dpkt import pcap, pcapng

    from msewatch.sources import pcap as src

    assert set(src._PCAP_MAGICS) == {pcap.TCPDUMP_MAGIC, pcap.PMUDPCT_MAGIC, pcap.TCPDUMP_MAGIC_NANO,
                                     pcap.PMUDPCT_MAGIC_NANO, pcap.MODPCAP_MAGIC, pcap.PACPDOM_MAGIC}
    assert src._PCAP_MAGICS[pcap.TCPDUMP_MAGIC_NANO][1] == 1e9 and src._PCAP_MAGICS[pcap.MODPCAP_MAGIC][2] == 24
    assert (src._PCAPNG_SHB, src._PCAPNG_BOM, src._PCAPNG_VERSION_MAJOR) == (
        pcapng.PCAPNG_BT_SHB, pcapng.BYTE_ORDER_MAGIC, pcapng.PCAPNG_VERSION_MAJOR)
