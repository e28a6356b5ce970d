# @TEST-DOC: With two shards and only the shard-0 bridge connected, shard-1 evidence is held, not published, and goes to the shard-1 bridge when it subscribes; every flow is logged once.
#
# @TEST-REQUIRES: zeek -e 'event zeek_init() { if ( ! Version::at_least("7.2") ) exit(1); }'
# @TEST-REQUIRES: $PYTHON -c 'import websockets.sync.client'
# @TEST-PORT: WEBSOCKET_PORT
#
# @TEST-EXEC: btest-bg-run zeek "zeek -C -r $TRACES/swarm.pcap $PACKAGE $PACKAGE/wait-for-bridge.zeek %INPUT"
# @TEST-EXEC: $PYTHON $SCRIPTS/shard_bridges.py $WEBSOCKET_PORT >bridges.out 2>&1 || { cat bridges.out; false; }
# @TEST-EXEC: btest-bg-wait 120
# @TEST-EXEC: n0=$(sed -n 's/^shard 0: \([0-9]*\) flows$/\1/p' bridges.out) && test "$n0" -gt 0
# @TEST-EXEC: n1=$(sed -n 's/^shard 1: \([0-9]*\) flows$/\1/p' bridges.out) && test "$n1" -gt 0
# @TEST-EXEC: n0=$(sed -n 's/^shard 0: \([0-9]*\) flows$/\1/p' bridges.out) && grep -qx "msewatch_evidence_published_total $n0" zeek/metrics
# @TEST-EXEC: n1=$(sed -n 's/^shard 1: \([0-9]*\) flows$/\1/p' bridges.out) && grep -qx "msewatch_evidence_held_total $n1" zeek/metrics && grep -qx "msewatch_evidence_resent_total $n1" zeek/metrics
# @TEST-EXEC: raised=$(sed -n 's/^raised //p' zeek/metrics) && test "$(zeek-cut kind <zeek/msewatch.log | grep -c flow)" = "$raised"
# @TEST-EXEC: test "$(zeek-cut uid <zeek/msewatch.log | sort | uniq -d | wc -l)" = 0
# @TEST-EXEC: grep -qx 'msewatch_evidence_unanswered 0' zeek/metrics

redef MSEWatch::listen_port = to_port(getenv("WEBSOCKET_PORT"));
redef MSEWatch::shard_count = 2;

global raised = 0;

event MSEWatch::flow_evidence(version: count, uid: string, community_id: string,
    orig_h: addr, orig_p: port, resp_h: addr, resp_p: port, ts: time,
    sizes: string, times: string, bursts: string,
    orig_heads: string, resp_heads: string,
    orig_pkts: count, resp_pkts: count, orig_bytes: count, resp_bytes: count,
    duration: interval, handshake: bool, closed: bool, complete: bool)
	{
	if ( ! is_remote_event() )
		++raised;
	}

event zeek_done()
	{
	local f = open("metrics");
	print f, fmt("raised %d", raised);
	for ( i, m in Telemetry::collect_metrics("msewatch") )
		print f, fmt("%s %.0f", m$opts$name, m$value);
	close(f);
	}
