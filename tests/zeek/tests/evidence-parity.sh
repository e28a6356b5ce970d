# @TEST-DOC: On one corpus capture of each kind, Zeek's flow_evidence matches `msewatch evidence PCAP` (compare_evidence.py lists the tolerated differences; tools/zeek_parity.py runs the whole corpus).
#
# @TEST-REQUIRES: ls $TRACES/*.pcap >/dev/null 2>&1
# @TEST-REQUIRES: msewatch evidence --help >/dev/null 2>&1
#
# @TEST-EXEC: $SCRIPTS/run-parity
