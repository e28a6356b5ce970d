# @TEST-DOC: Reading a pcap with wait-for-bridge, Zeek holds the trace until a bridge connects, publishes v1-typed evidence over the WebSocket API, and labels conn.log with the verdicts before it exits.
#
# @TEST-REQUIRES: zeek -e 'event zeek_init() { if ( ! Version::at_least("7.2") ) exit(1); }'
# @TEST-REQUIRES: $PYTHON -c 'import websockets.sync.client'
# @TEST-PORT: WEBSOCKET_PORT
#
# @TEST-EXEC: $PYTHON $SCRIPTS/make_pcap.py tiny.pcap
# @TEST-EXEC: btest-bg-run zeek "zeek -r ../tiny.pcap $PACKAGE $PACKAGE/wait-for-bridge.zeek %INPUT"
# @TEST-EXEC: $PYTHON $SCRIPTS/fake_bridge.py $WEBSOCKET_PORT >bridge.out 2>&1 || { cat bridge.out; false; }
# @TEST-EXEC: btest-bg-wait 60
# @TEST-EXEC: grep -qx 'answered 3 flows' bridge.out
# @TEST-EXEC: zeek-cut id.orig_p msewatch <zeek/conn.log | sort >conn.cut
# @TEST-EXEC: grep -qx '51413	p2p_likely:bt_mse' conn.cut
# @TEST-EXEC: grep -qx '40000	normal_likely' conn.cut
# @TEST-EXEC: grep -qx '40001	p2p_likely:bt_mse' conn.cut
# @TEST-EXEC: test "$(zeek-cut kind <zeek/msewatch.log | grep -c flow)" = 3

redef MSEWatch::listen_port = to_port(getenv("WEBSOCKET_PORT"));
