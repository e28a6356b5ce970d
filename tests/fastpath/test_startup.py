"""Start-up of `msewatch analyze`: modules it does not need for a pcap are not imported
(docs/performance.md measures what each costs), and the constants written out in their place
still agree with the library they came from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"

PROBE = """
import json, os, sys
from msewatch.cli import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "modules": sorted(m for m in os.environ["PROBE_MODULES"].split(",") if m in sys.modules)}))
"""


def imported_by(*args, modules=("dpkt", "yaml", "jinja2", "tqdm", "multiprocessing"), env=None):
    p = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], capture_output=True, text=True,
                       env={**os.environ, **(env or {}), "PROBE_MODULES": ",".join(modules)})
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.splitlines()[-1])


def test_analyze_of_a_pcap_imports_no_dpkt_yaml_jinja2_tqdm_or_multiprocessing(tmp_path):
    out = imported_by("analyze", CORPUS / "dns.pcap", "-q", "-o", tmp_path / "v.jsonl", "--no-progress")
    assert out == {"rc": 0, "modules": []}


def test_with_the_compiled_host_model_analyze_imports_no_datasketches_or_numpy(tmp_path):
    """The compiled host model counts with its own HyperLogLog (the library's estimates): the
    library and numpy, half of the start-up before, are loaded only by the pure-Python model."""
    from msewatch import fastdecide

    if not fastdecide.available():
        pytest.skip(fastdecide.status())
    args = ("analyze", CORPUS / "mse_rc4_libtorrent_transmission.pcap", "-q", "-o", tmp_path / "v.jsonl",
            "--no-progress")
    assert imported_by(*args, modules=("datasketches", "numpy")) == {"rc": 0, "modules": []}
    pure = imported_by(*args, modules=("datasketches", "numpy"), env={"MSEWATCH_PURE_PYTHON": "1"})
    assert pure == {"rc": 0, "modules": ["datasketches", "numpy"]}


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
