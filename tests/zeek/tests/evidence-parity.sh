# @TEST-DOC: On every corpus pcap, Zeek's flow_evidence matches `msewatch evidence PCAP` (compare_evidence.py lists the tolerated differences).
#
# @TEST-REQUIRES: ls $TRACES/*.pcap >/dev/null 2>&1
# @TEST-REQUIRES: msewatch evidence --help >/dev/null 2>&1
#
# @TEST-EXEC: $SCRIPTS/run-parity
