# @TEST-DOC: Evidence goes only where a bridge can take it: reading a trace with no bridge and no wait-for-bridge, nothing is published nor kept; with keep_unanswered off it is published into the void as before.  Holding for a bridge to come is in delivery-shards.
#
# @TEST-EXEC: $PYTHON $SCRIPTS/make_pcap.py tiny.pcap
# @TEST-EXEC: zeek -r tiny.pcap $PACKAGE %INPUT >default
# @TEST-EXEC: zeek -r tiny.pcap $PACKAGE %INPUT MSEWatch::keep_unanswered=F >unkept
# @TEST-EXEC: grep -qx 'msewatch_evidence_unsent_total 3' default
# @TEST-EXEC: grep -qx 'msewatch_evidence_published_total 0' default
# @TEST-EXEC: grep -qx 'msewatch_evidence_held_total 0' default
# @TEST-EXEC: grep -qx 'msewatch_evidence_unanswered 0' default
# @TEST-EXEC: grep -qx 'msewatch_evidence_unsent_total 0' unkept
# @TEST-EXEC: grep -qx 'msewatch_evidence_unanswered 0' unkept

redef MSEWatch::listen = F;

event zeek_done()
	{
	for ( i, m in Telemetry::collect_metrics("msewatch") )
		print fmt("%s %.0f", m$opts$name, m$value);
	}
