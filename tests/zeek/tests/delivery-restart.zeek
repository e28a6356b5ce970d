# @TEST-DOC: Evidence still waiting for its verdict at a graceful stop is saved to unanswered_file and restored, argument for argument, by the next Zeek; the file is removed once read.
#
# @TEST-EXEC: PHASE=save zeek $PACKAGE %INPUT >saved
# @TEST-EXEC: test -s msewatch_unanswered.json
# @TEST-EXEC: PHASE=load zeek $PACKAGE %INPUT >restored
# @TEST-EXEC: test ! -e msewatch_unanswered.json
# @TEST-EXEC: test "$(wc -l <saved)" = 2
# @TEST-EXEC: cmp saved restored
#
# A file saved by an older package (evidence version 1, typed vectors: the two
# flows below as that package saved them, Scripts/unanswered-v1.json) is read
# too, and its evidence sent as version 2 (the same arguments but for the
# times, which the old file holds in microseconds):
# @TEST-EXEC: cp $SCRIPTS/unanswered-v1.json msewatch_unanswered.json
# @TEST-EXEC: PHASE=load zeek $PACKAGE %INPUT >restored-v1 2>stderr-v1
# @TEST-EXEC: test ! -e msewatch_unanswered.json
# @TEST-EXEC: sed 's/^\([^,]*, [^,]*\), [0-9.]*, /\1, /' saved >saved-nosince
# @TEST-EXEC: sed 's/^\([^,]*, [^,]*\), [0-9.]*, /\1, /' restored-v1 | sed 's/"0,358105,12500000,1000001000"/"0,358104706,12500000,1000001000"/' >restored-v1-nosince
# @TEST-EXEC: cmp saved-nosince restored-v1-nosince
# @TEST-EXEC: grep -q '(2 saved as evidence version 1, sent as version 2)' stderr-v1

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

	MSEWatch::keep_evidence("CmseA1", "zeek/msewatch/evidence",
	    Cluster::make_event(MSEWatch::flow_evidence, 2, "CmseA1", "1:abc=", 10.0.0.1,
	        51413/tcp, 10.0.0.2, 6881/tcp, double_to_time(1700000001.123456),
	        "296,-310,124,-82", "0,358104706,12500000,1000001000", "296,-310,124,-82",
	        "0a1b,", "ff00,", 9, 7, 420, 392, 1.000001 sec, T, F, T));
	MSEWatch::keep_evidence("CdhtB2", "zeek/msewatch/evidence/1/",
	    Cluster::make_event(MSEWatch::flow_evidence, 2, "CdhtB2", "1:def=", 10.0.0.1,
	        40000/udp, 10.0.0.3, 6881/udp, double_to_time(1700000002.5), "60", "0", "60",
	        "64313a6164,", "", 1, 0, 60, 0, 0 usec, F, F, T));
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
