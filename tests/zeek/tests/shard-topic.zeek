# @TEST-DOC: With shard_count=4 every flow of a local host goes to one of zeek/msewatch/evidence/0/ .. 3/, whatever its direction, and hosts spread over all shards.
#
# @TEST-EXEC: zeek -b $PACKAGE %INPUT >out 2>&1
# @TEST-EXEC: test "$(cat out)" = "$(printf 'T\nT\nT\nT')" || { cat out; false; }

redef MSEWatch::shard_count = 4;
redef Site::local_nets += { 10.0.0.0/8 };

event zeek_init()
	{
	local outbound = MSEWatch::evidence_topic_for(10.1.1.1, 8.8.8.8);
	local inbound = MSEWatch::evidence_topic_for(8.8.8.8, 10.1.1.1);
	print outbound == inbound;
	print /^zeek\/msewatch\/evidence\/[0-3]\/$/ == outbound;

	local shards: set[string] = set();
	local i = 0;
	while ( i < 64 )
		{
		add shards[MSEWatch::evidence_topic_for(count_to_v4_addr(167837696 + i), 8.8.8.8)];
		++i;
		}
	print |shards| == 4;

	# Neither end local: the originator decides.
	print MSEWatch::evidence_topic_for(8.8.4.4, 1.1.1.1) ==
	      MSEWatch::evidence_topic_for(8.8.4.4, 9.9.9.9);
	}
