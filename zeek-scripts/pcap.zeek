##! Reading a pcap with a bridge attached (:zeek:see:`MSEWatch::pcap_wait_for_bridge`).
##!
##! ``zeek -r`` would finish the trace before a bridge could connect and exit
##! before its verdicts came back.  With the option set (and
##! ``exit_only_after_terminate = T``), Zeek
##!
##! 1. suspends packet processing at the end of ``zeek_init``,
##! 2. resumes it when a WebSocket client subscribed to the evidence topic
##!    connects (``Cluster::websocket_client_added``),
##! 3. at the end of the trace (``Pcap::file_done``) publishes the evidence
##!    of every flow still being recorded: network time is frozen from then
##!    on, so neither timers nor inactivity would publish it,
##! 4. terminates once every published flow has its verdict, so that
##!    conn.log, written at termination, carries the labels.
##!
##! Needs Zeek 7.2 or later (the WebSocket client events).

@load ./main
@load ./evidence
@load ./verdicts

module MSEWatch;

# Whether to track the open connections (pcap mode with a bridge).
global track_open_flows = F;

# Connections not yet published, by uid (only while track_open_flows).
global open_flows: table[string] of conn_id;

# Flows whose evidence went out and whose verdict has not come back.
global awaiting_verdict: set[string];
global waiting_for_client = F;
global waiting_for_verdicts = F;

function wants_bridge(): bool
	{
	return pcap_wait_for_bridge && reading_traces();
	}

function terminate_when_answered()
	{
	if ( waiting_for_verdicts && |awaiting_verdict| == 0 )
		terminate();
	}

event zeek_init() &priority=-10
	{
	if ( ! wants_bridge() )
		{
		disable_event_group("msewatch-pcap-bridge");
		return;
		}

	if ( ! exit_only_after_terminate )
		Reporter::warning("MSEWatch: pcap_wait_for_bridge without exit_only_after_terminate=T: Zeek exits at the end of the trace, before the last verdicts arrive");

@if ( Version::at_least("7.2") )
	track_open_flows = T;
	waiting_for_client = T;
	suspend_processing();

	# conn.log entries of flows that end while their verdict is in flight
	# wait for it (verdicts.zeek): network time runs far ahead of the
	# bridge here, and stops at the end of the trace, so hold them until
	# the verdict arrives (every flow gets one before Zeek terminates).
	Log::set_max_delay_interval(Conn::LOG, 1 day);
	Log::set_max_delay_queue_size(Conn::LOG, 10000000);
@else
	Reporter::warning("MSEWatch: pcap_wait_for_bridge needs Zeek 7.2 or later; not waiting");
	disable_event_group("msewatch-pcap-bridge");
@endif
	}

@if ( Version::at_least("7.2") )
event Cluster::websocket_client_added(endpoint: Cluster::EndpointInfo, subscriptions: string_vec)
	{
	if ( ! waiting_for_client || ! subscribes_to_evidence_topics(subscriptions) )
		return;

	waiting_for_client = F;
	continue_processing();
	}
@endif

# The handlers below run per connection or per verdict; they are in an event
# group that zeek_init disables unless Zeek reads a trace for a bridge.

event new_connection(c: connection) &group="msewatch-pcap-bridge"
	{
	if ( track_open_flows )
		open_flows[c$uid] = c$id;
	}

hook evidence_published(c: connection, ending: bool) &group="msewatch-pcap-bridge"
	{
	if ( ! track_open_flows )
		return;

	delete open_flows[c$uid];
	add awaiting_verdict[c$uid];
	}

event connection_state_remove(c: connection) &group="msewatch-pcap-bridge"
	{
	# Deleting a uid that is not there does nothing.
	if ( track_open_flows )
		delete open_flows[c$uid];
	}

event MSEWatch::verdict(uid: string, orig_h: addr, orig_p: port, resp_h: addr,
    resp_p: port, label: string, protocol: string, probability: double,
    reasons: vector of string, decided_at: time, decided_at_packet: count) &priority=-10
    &group="msewatch-pcap-bridge"
	{
	# One table lookup: the size tells whether the uid was awaited.
	local awaited = |awaiting_verdict|;
	delete awaiting_verdict[uid];
	if ( |awaiting_verdict| == awaited )
		return;

	# terminate_when_answered(), written out: this runs once per verdict.
	if ( waiting_for_verdicts && |awaiting_verdict| == 0 )
		terminate();
	}

event MSEWatch::flow_labels(uids: string, labels: string) &priority=-10
    &group="msewatch-pcap-bridge"
	{
	local u = split_string(uids, / /);
	for ( i in u )
		delete awaiting_verdict[u[i]];

	terminate_when_answered();
	}

event Pcap::file_done(path: string)
	{
	if ( ! track_open_flows )
		return;

	# publish_now() deletes from open_flows: collect first.
	local ids: vector of conn_id = vector();
	for ( uid in open_flows )
		ids += open_flows[uid];

	for ( i in ids )
		if ( connection_exists(ids[i]) )
			publish_now(lookup_connection(ids[i]));

	waiting_for_verdicts = T;
	terminate_when_answered();
	}
