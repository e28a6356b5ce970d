# @TEST-DOC: `zeek -r trace.pcap msewatch` exits when the trace ends (no WebSocket listener), and the listener is started only where a bridge can use it.
#
# @TEST-EXEC: $PYTHON $SCRIPTS/make_pcap.py tiny.pcap
# @TEST-EXEC: timeout 120 zeek -C -r tiny.pcap $PACKAGE $SCRIPTS/dump-evidence.zeek >evidence.jsonl
# @TEST-EXEC: test "$(wc -l <evidence.jsonl)" = 3
# @TEST-EXEC: zeek -b $PACKAGE %INPUT >no-input.out
# @TEST-EXEC: grep -qx 'wants_listener F' no-input.out
# @TEST-EXEC: timeout 120 zeek -C -r tiny.pcap $PACKAGE %INPUT >pcap.out
# @TEST-EXEC: grep -qx 'wants_listener F' pcap.out
# @TEST-EXEC: timeout 120 zeek -C -r tiny.pcap $PACKAGE %INPUT MSEWatch::pcap_wait_for_bridge=T >wait.out
# @TEST-EXEC: grep -qx 'wants_listener T' wait.out
# @TEST-EXEC: timeout 120 zeek -C -r tiny.pcap $PACKAGE %INPUT MSEWatch::pcap_wait_for_bridge=T MSEWatch::listen=F >off.out
# @TEST-EXEC: grep -qx 'wants_listener F' off.out

# Decide, then stop: with pcap_wait_for_bridge Zeek would otherwise wait for
# a bridge.
event zeek_init() &priority=100
	{
	print fmt("wants_listener %s", MSEWatch::wants_listener());
	if ( MSEWatch::pcap_wait_for_bridge )
		terminate();
	}
