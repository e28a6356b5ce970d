##! Bounded early-connection evidence (docs/evidence.md), published once per
##! flow as :zeek:see:`MSEWatch::flow_evidence`.
##!
##! Per-packet script work is the main cost, so the packet handlers return on
##! their first line once a connection's budget is spent: ``tcp_packet`` for
##! TCP and ``udp_contents`` for UDP (docs/zeek.md explains the choice).

@load base/protocols/conn/removal-hooks
@load ./main
@load ./delivery

module MSEWatch;

export {
	## The evidence of one flow, published once: when its budget is spent
	## or when it ends, whichever is first.  Flat, typed arguments in the
	## order of docs/evidence.md; heads are lower-case hex.
	global flow_evidence: event(version: count, uid: string, community_id: string,
	    orig_h: addr, orig_p: port, resp_h: addr, resp_p: port, ts: time,
	    sizes: vector of int, times: vector of interval, bursts: vector of int,
	    orig_heads: vector of string, resp_heads: vector of string,
	    orig_pkts: count, resp_pkts: count, orig_bytes: count, resp_bytes: count,
	    duration: interval, handshake: bool, closed: bool, complete: bool);

	## Whether to publish a flow after :zeek:see:`MSEWatch::max_age` even if
	## no further packet arrives.  Costs one timer per flow; without it a
	## flow that goes quiet is published when Zeek removes it (after the
	## inactivity timeout).
	option publish_at_max_age = T;

	## Whether flows that never carried a payload byte (scans, refused or
	## unanswered connection attempts) are published.  The bridge's host
	## model counts them as fan-out.
	option publish_payloadless = T;

	## Evidence of one connection while it is being recorded.
	type Evidence: record {
		## Signed payload sizes of the recorded packets (+ orig, - resp).
		sizes:      vector of int      &default=vector();
		## Time since the flow's first packet of each recorded packet.
		times:      vector of interval &default=vector();
		## Signed accumulated payload bytes of each direction run.
		bursts:     vector of int      &default=vector();
		## Hex heads of the originator's first payload packets.
		orig_heads: vector of string   &default=vector();
		## Hex heads of the responder's first payload packets.
		resp_heads: vector of string   &default=vector();
	};

	## Called once per connection right after its evidence was published.
	## *ending* is true when that happened during the connection's removal,
	## i.e. nothing that arrives later can be attached to it anymore.
	global evidence_published: hook(c: connection, ending: bool);

	## Publishes the evidence of *c* now if that has not happened yet
	## (used at the end of a trace, see pcap.zeek).
	global publish_now: function(c: connection);

	## Connections being recorded, by uid; maintained only while
	## :zeek:see:`MSEWatch::track_open_flows` is set (pcap mode).
	global open_flows: table[string] of conn_id;

	## Whether to maintain :zeek:see:`MSEWatch::open_flows`.
	global track_open_flows = F;
}

redef record connection += {
	## Evidence being recorded; unset before the first packet and after
	## publication.
	msewatch_ev: Evidence &optional;
	## Set once the evidence was published: the packet handlers return at once.
	msewatch_done: bool &default=F;
};

# udp_contents is raised only for the ports or directions asked for; we need
# all of them.  A later "redef udp_content_deliver_all_orig = F;" (and _resp)
# turns UDP evidence off.
redef udp_content_deliver_all_orig = T;
redef udp_content_deliver_all_resp = T;

global finalize_evidence: Conn::RemovalHook;
global max_age_reached: event(c: connection);

function start_recording(c: connection)
	{
	c$msewatch_ev = Evidence();
	Conn::register_removal_hook(c, finalize_evidence);

	if ( publish_at_max_age )
		schedule max_age { max_age_reached(c) };

	if ( track_open_flows )
		open_flows[c$uid] = c$id;
	}

function is_past_max_age(c: connection): bool
	{
	return network_time() - c$start_time > max_age;
	}

function opens_run_beyond_budget(ev: Evidence, is_orig: bool): bool
	{
	local n = |ev$bursts|;

	if ( n == 0 )
		return max_bursts == 0;

	return (ev$bursts[n - 1] > 0) != is_orig && n >= max_bursts;
	}

function add_to_bursts(ev: Evidence, size: int)
	{
	local n = |ev$bursts|;

	if ( n > 0 && (ev$bursts[n - 1] > 0) == (size > 0) )
		ev$bursts[n - 1] = ev$bursts[n - 1] + size;
	else
		ev$bursts += size;
	}

function keep_head(ev: Evidence, is_orig: bool, payload: string, heads_per_direction: count)
	{
	local head = bytestring_to_hexstr(payload[0:min_count(head_bytes, 256)]);

	if ( is_orig )
		{
		if ( |ev$orig_heads| < heads_per_direction )
			ev$orig_heads += head;
		}
	else if ( |ev$resp_heads| < heads_per_direction )
		ev$resp_heads += head;
	}

# Records one payload-bearing packet.  Returns T when the budget is spent;
# the packet that finds it spent (max_age passed, or it would open run K+1)
# is not recorded.
function record_payload(c: connection, is_orig: bool, len: count, payload: string,
                        heads_per_direction: count): bool
	{
	local ev = c$msewatch_ev;

	if ( is_past_max_age(c) || opens_run_beyond_budget(ev, is_orig) )
		return T;

	local size: int = len;
	if ( ! is_orig )
		size = -size;

	ev$sizes += size;
	ev$times += network_time() - c$start_time;
	add_to_bursts(ev, size);
	keep_head(ev, is_orig, payload, heads_per_direction);

	return |ev$sizes| >= max_packets;
	}

function is_tcp(c: connection): bool
	{
	return get_port_transport_proto(c$id$resp_p) == tcp;
	}

# TCP: SYN from the originator ("S") and SYN/ACK from the responder ("h").
function handshake_seen(c: connection): bool
	{
	return is_tcp(c) && "S" in c$history && "h" in c$history;
	}

# TCP: FIN or RST from either side.
function close_seen(c: connection): bool
	{
	return is_tcp(c) && (/[FfRr]/ in c$history);
	}

function carried_payload(c: connection): bool
	{
	return c$orig$size > 0 || c$resp$size > 0;
	}

# Zeek refreshes a connection record's counters, duration and history when
# it hands the record to an event; a timer event holds the record as it was
# at the last packet.  Looking the connection up refreshes it in place.
function refresh(c: connection)
	{
	if ( connection_exists(c$id) )
		lookup_connection(c$id);
	}

function publish_evidence(c: connection, ending: bool)
	{
	c$msewatch_done = T;
	refresh(c);

	if ( track_open_flows )
		delete open_flows[c$uid];

	local ev = c$msewatch_ev;
	delete c$msewatch_ev;

	if ( ! publish_payloadless && ! carried_payload(c) )
		return;

	local id = c$id;
	event MSEWatch::flow_evidence(evidence_version, c$uid, community_id_v1(id),
	    id$orig_h, id$orig_p, id$resp_h, id$resp_p, c$start_time,
	    ev$sizes, ev$times, ev$bursts, ev$orig_heads, ev$resp_heads,
	    c$orig?$num_pkts ? c$orig$num_pkts : 0,
	    c$resp?$num_pkts ? c$resp$num_pkts : 0,
	    c$orig$size, c$resp$size, c$duration,
	    handshake_seen(c), close_seen(c), T);

	hook evidence_published(c, ending);
	}

function publish_now(c: connection)
	{
	if ( ! c$msewatch_done && c?$msewatch_ev )
		publish_evidence(c, F);
	}

event tcp_packet(c: connection, is_orig: bool, flags: string, seq: count, ack: count,
                 len: count, payload: string)
	{
	if ( c$msewatch_done )
		return;

	if ( ! c?$msewatch_ev )
		start_recording(c);

	if ( len > 0 && record_payload(c, is_orig, len, payload, 1) )
		publish_evidence(c, F);
	}

event udp_contents(u: connection, is_orig: bool, contents: string)
	{
	if ( u$msewatch_done )
		return;

	if ( ! u?$msewatch_ev )
		start_recording(u);

	if ( |contents| > 0 && record_payload(u, is_orig, |contents|, contents, udp_heads) )
		publish_evidence(u, F);
	}

event max_age_reached(c: connection)
	{
	if ( ! c$msewatch_done && c?$msewatch_ev )
		publish_evidence(c, F);
	}

# Zeek swaps orig and resp when it learns it guessed them wrong (for example
# a SYN/ACK seen before the SYN); keep the signs relative to the new orig.
event connection_flipped(c: connection)
	{
	if ( c$msewatch_done || ! c?$msewatch_ev )
		return;

	local ev = c$msewatch_ev;
	for ( i in ev$sizes )
		ev$sizes[i] = -ev$sizes[i];
	for ( i in ev$bursts )
		ev$bursts[i] = -ev$bursts[i];

	local heads = ev$orig_heads;
	ev$orig_heads = ev$resp_heads;
	ev$resp_heads = heads;
	}

hook finalize_evidence(c: connection)
	{
	if ( ! c$msewatch_done && c?$msewatch_ev )
		publish_evidence(c, T);
	}

# Sends every locally raised flow_evidence to the bridge.  Events that came
# in from the network are not sent back out.
event MSEWatch::flow_evidence(version: count, uid: string, community_id: string,
    orig_h: addr, orig_p: port, resp_h: addr, resp_p: port, ts: time,
    sizes: vector of int, times: vector of interval, bursts: vector of int,
    orig_heads: vector of string, resp_heads: vector of string,
    orig_pkts: count, resp_pkts: count, orig_bytes: count, resp_bytes: count,
    duration: interval, handshake: bool, closed: bool, complete: bool) &priority=-5
	{
	if ( is_remote_event() )
		return;

	local topic = evidence_topic_for(orig_h, resp_h);
@if ( Version::at_least("7.1") )
	deliver_evidence(uid, topic, Cluster::make_event(MSEWatch::flow_evidence, version, uid,
	    community_id, orig_h, orig_p, resp_h, resp_p, ts, sizes, times, bursts, orig_heads,
	    resp_heads, orig_pkts, resp_pkts, orig_bytes, resp_bytes, duration,
	    handshake, closed, complete));
@else
	deliver_evidence(uid, topic, Broker::make_event(MSEWatch::flow_evidence, version, uid,
	    community_id, orig_h, orig_p, resp_h, resp_p, ts, sizes, times, bursts, orig_heads,
	    resp_heads, orig_pkts, resp_pkts, orig_bytes, resp_bytes, duration,
	    handshake, closed, complete));
@endif
	}
