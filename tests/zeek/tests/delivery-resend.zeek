# @TEST-DOC: Evidence stays until its verdict comes back: a bridge that leaves without answering gets the unanswered flows again when it subscribes again, a repeated verdict is logged once, and protocol "unknown" is no protocol.
#
# @TEST-REQUIRES: zeek -e 'event zeek_init() { if ( ! Version::at_least("7.2") ) exit(1); }'
# @TEST-REQUIRES: $PYTHON -c 'import websockets.sync.client'
# @TEST-PORT: WEBSOCKET_PORT
#
# @TEST-EXEC: $PYTHON $SCRIPTS/make_pcap.py tiny.pcap
# @TEST-EXEC: btest-bg-run zeek "zeek -r ../tiny.pcap $PACKAGE $PACKAGE/wait-for-bridge.zeek %INPUT"
# @TEST-EXEC: $PYTHON $SCRIPTS/flaky_bridge.py $WEBSOCKET_PORT 3 >bridge.out 2>&1 || { cat bridge.out; false; }
# @TEST-EXEC: btest-bg-wait 60
# @TEST-EXEC: grep -qx 'second connection: 2 flows re-sent' bridge.out
# @TEST-EXEC: test "$(zeek-cut kind uid <zeek/msewatch.log | grep -c flow)" = 3
# @TEST-EXEC: test "$(zeek-cut uid <zeek/msewatch.log | sort | uniq -d | wc -l)" = 0
# @TEST-EXEC: test "$(zeek-cut protocol <zeek/msewatch.log | sort -u)" = "-"
# @TEST-EXEC: zeek-cut msg <zeek/notice.log | grep -q 'looks like P2P (unknown protocol)'
# @TEST-EXEC: zeek-cut msewatch <zeek/conn.log | sort -u >labels
# @TEST-EXEC: test "$(cat labels)" = "p2p_likely"
# @TEST-EXEC: grep -qx 'msewatch_evidence_published_total 3' zeek/metrics
# @TEST-EXEC: grep -qx 'msewatch_evidence_resent_total 2' zeek/metrics
# @TEST-EXEC: grep -qx 'msewatch_verdicts_duplicate_total 1' zeek/metrics
# @TEST-EXEC: grep -qx 'msewatch_evidence_unanswered 0' zeek/metrics

redef MSEWatch::listen_port = to_port(getenv("WEBSOCKET_PORT"));

event zeek_done()
	{
	local f = open("metrics");
	for ( i, m in Telemetry::collect_metrics("msewatch") )
		print f, fmt("%s %.0f", m$opts$name, m$value);
	close(f);
	}
