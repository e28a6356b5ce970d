# @TEST-DOC: With no bridge subscribed, evidence is kept for re-delivery and not published; with keep_unanswered off it is published into the void as before.
#
# @TEST-EXEC: $PYTHON $SCRIPTS/make_pcap.py tiny.pcap
# @TEST-EXEC: zeek -r tiny.pcap $PACKAGE %INPUT >held
# @TEST-EXEC: zeek -r tiny.pcap $PACKAGE %INPUT MSEWatch::keep_unanswered=F >unkept
# @TEST-EXEC: grep -qx 'msewatch_evidence_held_total 3' held
# @TEST-EXEC: grep -qx 'msewatch_evidence_published_total 0' held
# @TEST-EXEC: grep -qx 'msewatch_evidence_unanswered 3' held
# @TEST-EXEC: grep -qx 'msewatch_evidence_held_total 0' unkept
# @TEST-EXEC: grep -qx 'msewatch_evidence_unanswered 0' unkept

redef MSEWatch::listen = F;

event zeek_done()
	{
	for ( i, m in Telemetry::collect_metrics("msewatch") )
		print fmt("%s %.0f", m$opts$name, m$value);
	}
