##! Bounded early-connection evidence (docs/evidence.md), published once per
##! flow as :zeek:see:`MSEWatch::flow_evidence`.
##!
##! Recording: with the package's native recorder (the ``MSEWatch::Evidence``
##! plugin in plugin/, built by zkg when a compiler is there) the per-packet
##! work is done in C++ and the scripts see one event per flow.  Without it
##! the scripts record from ``tcp_packet`` (TCP) and ``udp_contents`` (UDP),
##! returning on their first line once a connection's budget is spent.  Both
##! record the same evidence (docs/zeek.md, "Native recording").

@load ./main
@load ./delivery

module MSEWatch;

export {
	## The evidence of one flow, published once: when its budget is spent
	## or when it ends, whichever is first.  Flat, typed arguments in the
	## order of docs/evidence.md, version 2 (:zeek:see:`MSEWatch::evidence_version`):
	## the per-packet values packed into one string each, because Zeek's
	## WebSocket API converts every value of a vector separately.
	##
	## sizes, bursts: signed decimal integers joined by "," ("" = none).
	## times: nanoseconds since *ts* (rounded), decimal, joined by ",".
	## orig_heads, resp_heads: each head's lower-case hex followed by ","
	## ("" = no head, "," = one empty head).
	global flow_evidence: event(version: count, uid: string, community_id: string,
	    orig_h: addr, orig_p: port, resp_h: addr, resp_p: port, ts: time,
	    sizes: string, times: string, bursts: string,
	    orig_heads: string, resp_heads: string,
	    orig_pkts: count, resp_pkts: count, orig_bytes: count, resp_bytes: count,
	    duration: interval, handshake: bool, closed: bool, complete: bool);

	## *v* as flow_evidence carries sizes and bursts (and times in ns).
	global pack_ints: function(v: vector of int): string;

	## *v* as flow_evidence carries heads.
	global pack_heads: function(v: vector of string): string;

	## Times since a flow's start in nanoseconds, as flow_evidence carries them.
	global pack_times: function(v: vector of interval): string;

	## Whether to publish a flow after :zeek:see:`MSEWatch::max_age` even if
	## no further packet arrives.  Costs one timer per flow; without it a
	## flow that goes quiet is published when Zeek removes it (after the
	## inactivity timeout).
	option publish_at_max_age = T;

	## Whether flows that never carried a payload byte (scans, refused or
	## unanswered connection attempts) are published.  The bridge's host
	## model counts them as fan-out.
	option publish_payloadless = T;

@ifdef ( MSEWatch::__take_evidence )
	## Evidence of one connection, as the native recorder hands it over:
	## the packed strings of :zeek:see:`MSEWatch::flow_evidence`, built in
	## C++ (unset: none).
	type Evidence: record {
		sizes:      string &optional;
		times:      string &optional;
		bursts:     string &optional;
		orig_heads: string &optional;
		resp_heads: string &optional;
	};
@else
	## Evidence of one connection while it is being recorded.
	type Evidence: record {
		## Signed payload sizes of the recorded packets (+ orig, - resp).
		sizes:      vector of int      &default=vector();
		## Nanoseconds since the flow's first packet of each recorded packet.
		times:      vector of int      &default=vector();
		## Direction runs recorded so far.
		runs:       count              &default=0;
		## Hex heads of the originator's first payload packets.
		orig_heads: vector of string   &default=vector();
		## Hex heads of the responder's first payload packets.
		resp_heads: vector of string   &default=vector();
	};
@endif

	## Called once per connection right after its evidence was published.
	## *ending* is true when that happened during the connection's removal,
	## i.e. nothing that arrives later can be attached to it anymore.
	global evidence_published: hook(c: connection, ending: bool);

	## Publishes the evidence of TCP/UDP connection *c* now if that has not
	## happened yet (used at the end of a trace, see pcap.zeek).
	global publish_now: function(c: connection);
}

redef record connection += {
	## Evidence being recorded: set at the first payload-bearing packet by
	## the script recorder, or when the native recorder hands it over;
	## unset at publication.
	msewatch_ev: Evidence &optional;
	## Set once the evidence was published: the packet handlers return at once.
	msewatch_done: bool &default=F;
	## Script recorder: when Zeek flipped the TCP connection (see
	## ``connection_flipped`` below).
	msewatch_flipped_at: time &optional;
};

# udp_contents is raised only for the ports or directions asked for; we need
# all of them.  A later "redef udp_content_deliver_all_orig = F;" (and _resp)
# turns UDP evidence off.
redef udp_content_deliver_all_orig = T;
redef udp_content_deliver_all_resp = T;

@ifndef ( MSEWatch::__take_evidence )
# --- Script recording (no native recorder) -----------------------------------
global max_age_reached: event(c: connection);

# What follows runs once per payload-bearing packet of a flow that is still
# recording (at most max_packets per flow), so it is written for the Zeek
# interpreter: one function call per packet, no helper calls, bursts derived
# from the sizes once at publication (as the Python engine does).

function start_recording(c: connection): Evidence
	{
	local ev = Evidence();
	c$msewatch_ev = ev;

	if ( publish_at_max_age )
		schedule max_age { max_age_reached(c) };

	return ev;
	}

# Records one payload-bearing packet.  Returns T when the budget is spent;
# the packet that finds it spent (max_age passed, or it would open run K+1)
# is not recorded.
function record_payload(c: connection, is_orig: bool, len: count, payload: string,
                        heads_per_direction: count): bool
	{
	local ev = c?$msewatch_ev ? c$msewatch_ev : start_recording(c);
	local age = network_time() - c$start_time;

	if ( age > max_age )
		return T;

	local n = |ev$sizes|;

	if ( n == 0 || (ev$sizes[n - 1] > 0) != is_orig )
		{
		# The packet opens a direction run.
		if ( ev$runs >= max_bursts )
			return T;

		++ev$runs;
		}

	if ( is_orig )
		{
		ev$sizes += +len;
		if ( |ev$orig_heads| < heads_per_direction )
			ev$orig_heads += bytestring_to_hexstr(payload[0:head_bytes <= 256 ? head_bytes : 256]);
		}
	else
		{
		ev$sizes += -len;
		if ( |ev$resp_heads| < heads_per_direction )
			ev$resp_heads += bytestring_to_hexstr(payload[0:head_bytes <= 256 ? head_bytes : 256]);
		}

	# In ns, rounded as the native recorder does (llrint).
	ev$times += double_to_int(interval_to_double(age) * 1e9);

	return n + 1 >= max_packets;
	}

@endif

function pack_ints(v: vector of int): string
	{
	# to_json() of a vector of int is "[1,-2,3]".
	return |v| == 0 ? "" : to_json(v)[1:-1];
	}

function pack_heads(v: vector of string): string
	{
	return |v| == 0 ? "" : join_string_vec(v, ",") + ",";
	}

function pack_times(v: vector of interval): string
	{
	local ns: vector of int = vector();
	for ( i in v )
		ns += double_to_int(interval_to_double(v[i]) * 1e9);

	return pack_ints(ns);
	}

@ifndef ( MSEWatch::__publish_native )
# Signed direction runs of the recorded sizes.
function bursts_of(sizes: vector of int): vector of int
	{
	local bursts: vector of int = vector();
	local n = 0;

	for ( i in sizes )
		{
		local size = sizes[i];
		if ( n > 0 && (bursts[n - 1] > 0) == (size > 0) )
			bursts[n - 1] += size;
		else
			{
			bursts += size;
			++n;
			}
		}

	return bursts;
	}
@endif

function publish_evidence(c: connection, ending: bool)
	{
@ifdef ( MSEWatch::__publish_native )
	# The native recorder's plugin does all of the below (the same steps) in
	# C++: it is run once per flow.
	MSEWatch::__publish_native(c, ending);
@else
	c$msewatch_done = T;

	# Counters, duration and history as of now: the record handed to a
	# packet event was filled in before the packet was counted, a timer's
	# record when the timer was set.  lookup_connection() refreshes it in
	# place (verified on Zeek 8.0.10).
	if ( ! ending && connection_exists(c$id) )
		lookup_connection(c$id);

	local ev: Evidence;
	if ( c?$msewatch_ev )
		{
		ev = c$msewatch_ev;
		delete c$msewatch_ev;
		}
	else
		{
		# No payload was ever seen.
		if ( ! publish_payloadless )
			return;

		ev = Evidence();
		}

	local id = c$id;
	local h = c$history;
	# TCP only: handshake = SYN from the originator ("S") and SYN/ACK from
	# the responder ("h"); closed = FIN or RST from either side.
	local tcp_flow = get_port_transport_proto(id$resp_p) == tcp;

	event MSEWatch::flow_evidence(evidence_version, c$uid, community_id_v1(id),
	    id$orig_h, id$orig_p, id$resp_h, id$resp_p, c$start_time,
	    pack_ints(ev$sizes), pack_ints(ev$times), pack_ints(bursts_of(ev$sizes)),
	    pack_heads(ev$orig_heads), pack_heads(ev$resp_heads),
	    c$orig?$num_pkts ? c$orig$num_pkts : 0,
	    c$resp?$num_pkts ? c$resp$num_pkts : 0,
	    c$orig$size, c$resp$size, c$duration,
	    tcp_flow && "S" in h && "h" in h,
	    tcp_flow && ("F" in h || "f" in h || "R" in h || "r" in h), T);

	hook evidence_published(c, ending);
@endif
	}

# Whether the flow's evidence is recorded at all: TCP, and UDP unless UDP
# content delivery was turned off.
function is_recorded(c: connection): bool
	{
	local proto = get_port_transport_proto(c$id$resp_p);

	if ( proto == tcp )
		return T;

	return proto == udp && (udp_content_deliver_all_orig || udp_content_deliver_all_resp);
	}

function publish_now(c: connection)
	{
	if ( ! c$msewatch_done && is_recorded(c) )
		publish_evidence(c, F);
	}

@ifdef ( MSEWatch::__take_evidence )
# The native recorder spent the budget at a packet, or max_age passed.
event MSEWatch::native_budget_spent(c: connection)
	{
	if ( ! c$msewatch_done )
		publish_evidence(c, F);
	}
@else
event tcp_packet(c: connection, is_orig: bool, flags: string, seq: count, ack: count,
                 len: count, payload: string)
	{
	if ( c$msewatch_done )
		return;

	if ( c?$msewatch_flipped_at )
		{
		# Zeek flipped the connection while processing this packet, before
		# it raised this event with the old is_orig (TCP_Endpoint's
		# CheckHistory, a SYN/SYN-ACK reversal).
		if ( c$msewatch_flipped_at == network_time() )
			is_orig = ! is_orig;

		delete c$msewatch_flipped_at;
		}

	if ( len == 0 )
		return;

	if ( record_payload(c, is_orig, len, payload, 1) )
		publish_evidence(c, F);
	}

# udp_contents delivers what was captured of a datagram; the recorded size is
# its length on the wire (docs/evidence.md), as on the pcap path: what a snap
# length cut off the frame is added back, and a UDP length field shorter than
# that ends the datagram.  Under a cut the packet header record carries no IP
# or UDP header (Zeek builds them only from whole packets), but the frame's
# wire and captured lengths; the UDP header taken must be the flow's own, not
# a tunnel's.
event udp_contents(u: connection, is_orig: bool, contents: string)
	{
	if ( u$msewatch_done )
		return;

	local len = |contents|;
	local hdr = get_current_packet_header();
	local l2 = hdr$l2;

	if ( l2$len > l2$cap_len )
		len += l2$len - l2$cap_len;

	if ( hdr?$udp )
		{
		local uh = hdr$udp;
		if ( uh$ulen >= 8 && uh$ulen - 8 < len &&
		     ((uh$sport == u$id$orig_p && uh$dport == u$id$resp_p) ||
		      (uh$sport == u$id$resp_p && uh$dport == u$id$orig_p)) )
			{
			len = uh$ulen - 8;
			if ( len < |contents| )
				contents = contents[0:len];
			}
		}

	if ( len == 0 )
		return;

	if ( record_payload(u, is_orig, len, contents, udp_heads) )
		publish_evidence(u, F);
	}

event max_age_reached(c: connection)
	{
	if ( ! c$msewatch_done && connection_exists(c$id) )
		publish_evidence(c, F);
	}

@endif

# A TCP flow is complete once both sides sent FIN or one sent RST: publish
# then, not when Zeek removes the connection (tcp_close_delay later), as the
# extractor does.  The verdict is then usually back before conn.log is
# written.
event connection_finished(c: connection)
	{
	if ( ! c$msewatch_done )
		publish_evidence(c, F);
	}

event connection_reset(c: connection)
	{
	if ( ! c$msewatch_done )
		publish_evidence(c, F);
	}

event connection_rejected(c: connection)
	{
	if ( ! c$msewatch_done )
		publish_evidence(c, F);
	}

@ifndef ( MSEWatch::__take_evidence )
# Zeek swaps orig and resp when it learns it guessed them wrong (for example
# a SYN/ACK seen before the SYN); keep the signs relative to the new orig.
event connection_flipped(c: connection)
	{
	if ( c$msewatch_done )
		return;

	# A TCP flip inside Zeek's TCP state machine is raised before tcp_packet
	# of the same packet, whose is_orig is still the old one: tcp_packet
	# turns it round.  (A flip by an application analyzer comes after that
	# tcp_packet, which was right then; the mirroring below covers it.)
	if ( get_port_transport_proto(c$id$resp_p) == tcp )
		c$msewatch_flipped_at = network_time();

	if ( ! c?$msewatch_ev )
		return;

	local ev = c$msewatch_ev;
	for ( i in ev$sizes )
		ev$sizes[i] = -ev$sizes[i];

	local heads = ev$orig_heads;
	ev$orig_heads = ev$resp_heads;
	ev$resp_heads = heads;
	}
@endif

# The end of every TCP/UDP flow not yet published, with or without payload.
# A plain handler, not a Conn::RemovalHook: nearly every connection is
# recorded, and registering a hook per connection costs more than this
# one-field test (and payloadless flows would need a per-packet handler to
# register theirs).  Priority -2: before the removal hooks (-3) and the
# conn.log write (-5), so that verdicts.zeek sees the publication in time.
event connection_state_remove(c: connection) &priority=-2
	{
	if ( ! c$msewatch_done && is_recorded(c) )
		publish_evidence(c, T);
	}

# Sends every locally raised flow_evidence to the bridge.  Events that came
# in from the network are not sent back out.
event MSEWatch::flow_evidence(version: count, uid: string, community_id: string,
    orig_h: addr, orig_p: port, resp_h: addr, resp_p: port, ts: time,
    sizes: string, times: string, bursts: string,
    orig_heads: string, resp_heads: string,
    orig_pkts: count, resp_pkts: count, orig_bytes: count, resp_bytes: count,
    duration: interval, handshake: bool, closed: bool, complete: bool) &priority=-5
	{
	if ( is_remote_event() )
		return;

	# evidence_topic_for() and evidence_wanted() asked only where their answer
	# is not known beforehand: this runs once per flow, and a script call costs
	# more than the tests.
	local topic = shard_count <= 1 ? evidence_topic : evidence_topic_for(orig_h, resp_h);

	# Reading a trace with no bridge: nothing is published nor kept, so
	# nothing needs to be made ready for publication.
	if ( ! publishing_all && ! keeping && ! evidence_wanted(topic) )
		return;

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
