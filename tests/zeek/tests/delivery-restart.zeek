# @TEST-DOC: Evidence still waiting for its verdict at a graceful stop is saved to unanswered_file and restored, argument for argument, by the next Zeek; the file is removed once read.
#
# @TEST-EXEC: PHASE=save zeek $PACKAGE %INPUT >saved
# @TEST-EXEC: test -s msewatch_unanswered.json
# @TEST-EXEC: PHASE=load zeek $PACKAGE %INPUT >restored
# @TEST-EXEC: test ! -e msewatch_unanswered.json
# @TEST-EXEC: test "$(wc -l <saved)" = 2
# @TEST-EXEC: cmp saved restored

# The module's own view: the test reads its unexported table.
module MSEWatch;

redef MSEWatch::listen = F;
redef exit_only_after_terminate = getenv("PHASE") == "load";

function show(uid: string)
	{
	local u = unanswered[uid];
	print uid, u$topic, u$since, to_json(u$ev$args);
	}

event zeek_init()
	{
	if ( getenv("PHASE") != "save" )
		return;

	local sizes = vector(+296, -310, +124, -82);
	local times = vector(0 usec, 358.104706 usecs, 12.5 msecs, 1.000001 sec);
	MSEWatch::keep_evidence("CmseA1", "zeek/msewatch/evidence",
	    Cluster::make_event(MSEWatch::flow_evidence, 1, "CmseA1", "1:abc=", 10.0.0.1,
	        51413/tcp, 10.0.0.2, 6881/tcp, double_to_time(1700000001.123456), sizes, times,
	        vector(+296, -310, +124, -82), vector("0a1b"), vector("ff00"), 9, 7, 420, 392,
	        1.000001 sec, T, F, T));
	MSEWatch::keep_evidence("CdhtB2", "zeek/msewatch/evidence/1/",
	    Cluster::make_event(MSEWatch::flow_evidence, 1, "CdhtB2", "1:def=", 10.0.0.1,
	        40000/udp, 10.0.0.3, 6881/udp, double_to_time(1700000002.5), vector(+60),
	        vector(0 usec), vector(+60), vector("64313a6164"), vector(), 1, 0, 60, 0,
	        0 usec, F, F, T));
	for ( i, uid in vector("CmseA1", "CdhtB2") )
		show(uid);
	}

event Input::end_of_data(name: string, source: string) &priority=-10
	{
	for ( i, uid in vector("CmseA1", "CdhtB2") )
		{
		show(uid);
		evidence_answered(uid);  # nothing left to save at this stop
		}
	terminate();
	}
