# @TEST-DOC: Evidence of a hand-made pcap has exactly the sizes, times, bursts, heads and flags the contract's budgets give, published once per flow.
#
# @TEST-EXEC: $PYTHON $SCRIPTS/make_pcap.py tiny.pcap
# @TEST-EXEC: zeek -r tiny.pcap $PACKAGE $SCRIPTS/dump-evidence.zeek %INPUT >default.jsonl
# @TEST-EXEC: $PYTHON $SCRIPTS/check_evidence.py default.jsonl
# @TEST-EXEC: zeek -r tiny.pcap $PACKAGE $SCRIPTS/dump-evidence.zeek %INPUT MSEWatch::max_packets=3 >n3.jsonl
# @TEST-EXEC: $PYTHON $SCRIPTS/check_evidence.py n3.jsonl --max-packets 3
# @TEST-EXEC: zeek -r tiny.pcap $PACKAGE $SCRIPTS/dump-evidence.zeek %INPUT MSEWatch::max_bursts=2 >k2.jsonl
# @TEST-EXEC: $PYTHON $SCRIPTS/check_evidence.py k2.jsonl --max-bursts 2
# @TEST-EXEC: zeek -r tiny.pcap $PACKAGE $SCRIPTS/dump-evidence.zeek %INPUT MSEWatch::head_bytes=16 MSEWatch::udp_heads=2 >h16.jsonl
# @TEST-EXEC: $PYTHON $SCRIPTS/check_evidence.py h16.jsonl --head-bytes 16 --udp-heads 2
# @TEST-EXEC: zeek -r tiny.pcap $PACKAGE $SCRIPTS/dump-evidence.zeek %INPUT MSEWatch::publish_payloadless=F >np.jsonl
# @TEST-EXEC: $PYTHON $SCRIPTS/check_evidence.py np.jsonl --no-payloadless

