# @TEST-DOC: Pcap mode with a bridge on a real capture: every TCP/UDP connection gets its verdict in conn.log, also those that ended (and were published at their removal) before the verdict came back; their conn.log entries are held with Log::delay.
#
# @TEST-REQUIRES: test -f $TRACES/swarm.pcap
# @TEST-REQUIRES: $PYTHON -c 'import websockets.sync.client'
# @TEST-PORT: WEBSOCKET_PORT
#
# @TEST-EXEC: btest-bg-run zeek "zeek -C -r $TRACES/swarm.pcap $PACKAGE $PACKAGE/wait-for-bridge.zeek %INPUT"
# @TEST-EXEC: $PYTHON $SCRIPTS/fake_bridge.py $WEBSOCKET_PORT >bridge.out 2>&1 || { cat bridge.out; false; }
# @TEST-EXEC: btest-bg-wait 120
# @TEST-EXEC: zeek-cut uid proto msewatch <zeek/conn.log | awk '$2 == "tcp" || $2 == "udp"' >conn.cut
# @TEST-EXEC: test "$(awk '$3 == "-"' conn.cut | wc -l)" = 0 || { awk '$3 == "-"' conn.cut; false; }
# @TEST-EXEC: test "answered $(wc -l <conn.cut) flows" = "$(tail -n 1 bridge.out)" || { tail -n 1 bridge.out; false; }
# @TEST-EXEC: test "$(zeek-cut ending <zeek/ending.log | grep -c T)" -gt 0

redef MSEWatch::listen_port = to_port(getenv("WEBSOCKET_PORT"));

# How many flows were published at their removal (the case under test).
module EndingCount;

redef enum Log::ID += { LOG };

type Info: record {
	uid:    string &log;
	ending: bool   &log;
};

event zeek_init()
	{
	Log::create_stream(LOG, Log::Stream($columns=Info, $path="ending"));
	}

hook MSEWatch::evidence_published(c: connection, ending: bool)
	{
	Log::write(LOG, Info($uid=c$uid, $ending=ending));
	}
