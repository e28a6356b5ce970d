# @TEST-DOC: Verdicts are logged to msewatch.log, raise suppressible notices, and label conn.log when they arrive before the connection ends.
#
# @TEST-EXEC: $PYTHON $SCRIPTS/make_pcap.py tiny.pcap
# @TEST-EXEC: zeek -r tiny.pcap $PACKAGE %INPUT
# @TEST-EXEC: zeek-cut kind label protocol decided_at_packet <msewatch.log >msewatch.cut
# @TEST-EXEC: test "$(grep -cx 'flow	p2p_likely	bt_mse	3' msewatch.cut)" = 1
# @TEST-EXEC: grep -qx 'flow	normal_likely	-	2' msewatch.cut
# @TEST-EXEC: grep -qx 'host	p2p_host	-	-' msewatch.cut
# @TEST-EXEC: zeek-cut host reasons <msewatch.log | grep -qx '10.0.0.1	fanout=12,dht_nearby=1'
# @TEST-EXEC: zeek-cut note <notice.log | sort >notes
# @TEST-EXEC: test "$(grep -cx MSEWatch::Encrypted_BitTorrent notes)" = 1
# @TEST-EXEC: test "$(grep -cx MSEWatch::P2P_Host notes)" = 1
# @TEST-EXEC: test "$(wc -l <notes)" = 2
# @TEST-EXEC: zeek-cut id.orig_p msewatch <conn.log | sort >conn.cut
# @TEST-EXEC: grep -qx '51413	p2p_likely:bt_mse' conn.cut
# @TEST-EXEC: grep -qx '40000	normal_likely' conn.cut
# @TEST-EXEC: grep -qx '40001	-' conn.cut


# Spend the budget after three payload packets: the evidence goes out while
# the connections are still open, as in a live run.
redef MSEWatch::max_packets = 3;

event MSEWatch::flow_evidence(version: count, uid: string, community_id: string,
    orig_h: addr, orig_p: port, resp_h: addr, resp_p: port, ts: time,
    sizes: string, times: string, bursts: string,
    orig_heads: string, resp_heads: string,
    orig_pkts: count, resp_pkts: count, orig_bytes: count, resp_bytes: count,
    duration: interval, handshake: bool, closed: bool, complete: bool)
	{
	if ( sizes == "" )
		return;

	# The last recorded packet's time: the last of the packed nanoseconds.
	local ns = split_string(times, /,/);
	local decided_at = ts + double_to_interval(to_double(ns[|ns| - 1]) / 1e9);

	if ( get_port_transport_proto(resp_p) == tcp )
		{
		# Twice for the same uid, as at-least-once delivery can do after a
		# reconnect: logged once, and one notice.
		event MSEWatch::verdict(uid, orig_h, orig_p, resp_h, resp_p, "p2p_likely",
		                        "bt_mse", 0.97, vector("mse_shape=1"), decided_at, 3);
		event MSEWatch::verdict(uid, orig_h, orig_p, resp_h, resp_p, "p2p_likely",
		                        "bt_mse", 0.98, vector("mse_shape=1"), decided_at, 3);
		}
	else
		{
		event MSEWatch::verdict(uid, orig_h, orig_p, resp_h, resp_p, "normal_likely",
		                        "", 0.05, vector("dns_like=0"), decided_at, 2);
		event MSEWatch::host_verdict(orig_h, "p2p_host", 3.2, 0.96,
		                             vector("fanout=12", "dht_nearby=1"), decided_at);
		}
	}
