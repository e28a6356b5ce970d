##! Verdicts from the bridge: msewatch.log, notices, and the ``msewatch``
##! field of conn.log.
##!
##! The bridge publishes :zeek:see:`MSEWatch::verdict`,
##! :zeek:see:`MSEWatch::host_verdict` and (to a package whose
##! :zeek:see:`MSEWatch::hello` said it takes them) the packed conn.log
##! labels :zeek:see:`MSEWatch::flow_labels` on :zeek:see:`MSEWatch::verdict_topic`.
##! The node that talks to the bridge (standalone, or the manager) logs them
##! and raises the notices; conn.log is labelled where the connection lives
##! (the same node, or a worker: see cluster.zeek).

@load base/frameworks/notice
@load base/protocols/conn
@load ./main
@load ./delivery
@load ./evidence

module MSEWatch;

export {
	## The msewatch logging stream identifier.
	redef enum Log::ID += { LOG };

	## A default logging policy hook for the stream.
	global log_policy: Log::PolicyHook;

	## One verdict: a flow's (kind "flow") or a host's (kind "host").
	type Info: record {
		## When the verdict was reached: ``decided_at`` of a flow verdict,
		## ``ts`` of a host verdict.
		ts:                time             &log;
		## The flow's connection uid (flow verdicts).
		uid:               string           &log &optional;
		## The flow's endpoints (flow verdicts).
		id:                conn_id          &log &optional;
		## "flow" or "host".
		kind:              string           &log;
		## The host a host verdict is about.
		host:              addr             &log &optional;
		## p2p_likely, normal_likely or unknown (flows); p2p_host,
		## normal_host or unknown (hosts).
		label:             string           &log;
		## The protocol guess of a flow verdict (bt_mse, bt_plain, utp,
		## dht, tracker, lsd, or another protocol the detectors recognised:
		## tls, ssh, ...), unset when there is none ("unknown" or "").
		protocol:          string           &log &optional;
		## The probability behind the label.
		probability:       double           &log;
		## The host score (log-odds) of a host verdict.
		score:             double           &log &optional;
		## The reasons, as ``name=value`` strings.
		reasons:           vector of string &log;
		## Time of the packet at which the flow's decision was reached.
		decided_at:        time             &log &optional;
		## Payload packets seen when the flow's decision was reached
		## (1-based; 0 = none).
		decided_at_packet: count            &log &optional;
	};

	## Event that can be handled to access each msewatch.log record.
	global log_msewatch: event(rec: Info);

	redef enum Notice::Type += {
		## A flow looks like encrypted BitTorrent (MSE/PE): label
		## p2p_likely with protocol bt_mse.
		Encrypted_BitTorrent,
		## A flow looks like P2P traffic other than MSE/PE (plaintext
		## BitTorrent, uTP, DHT, tracker, LSD, or no protocol guess).
		P2P_Flow,
		## A host behaves like a P2P client (label p2p_host).
		P2P_Host,
	};

	## How long a notice is suppressed after it was raised for the same
	## local host (and protocol, for P2P_Flow).
	option notice_suppression: interval = 1 hr;

	## Flow labels that are written to conn.log's ``msewatch`` field.
	## In a cluster every one of them is also sent to every worker, so a
	## large cluster may want only ``set("p2p_likely")``.
	option conn_log_labels: set[string] = set("p2p_likely", "normal_likely", "unknown");

	## How long a connection whose evidence was published waits for its
	## verdict to be attached to its conn.log entry.
	const conn_label_timeout = 6 hr &redef;

	## How long a logged verdict is remembered so that the same verdict
	## delivered again (the bridge re-sends after a reconnect, or answers
	## re-published evidence from its cache) is not logged twice.  Must
	## exceed the time a verdict can spend queued in the bridge.
	const verdict_dedup_window = 30 min &redef;

	## How long the conn.log entry of a connection that ended before its
	## verdict arrived is held back (``Log::delay``) for the verdict.  Only
	## where a verdict can arrive: a cluster, or a node that listens for a
	## bridge (:zeek:see:`MSEWatch::wants_listener`).  0 secs: never held.
	## Pcap mode with a bridge holds entries until the verdict arrives.
	const conn_log_delay = 2 sec &redef;

	## A flow's verdict, published by the bridge (docs/evidence.md).
	## *protocol* is "unknown" (or "", from older bridges) when there is
	## no guess.
	global verdict: event(uid: string, orig_h: addr, orig_p: port, resp_h: addr,
	    resp_p: port, label: string, protocol: string, probability: double,
	    reasons: vector of string, decided_at: time, decided_at_packet: count);

	## A host's verdict, published by the bridge (docs/evidence.md).
	global host_verdict: event(host: addr, label: string, score: double,
	    probability: double, reasons: vector of string, ts: time);

	## The conn.log labels of flow verdicts the bridge sends without the
	## rest (its ``zeek.full_verdicts``, docs/evidence.md): *uids* and
	## *labels* are space-separated, the i-th label (``label`` or
	## ``label:protocol``) is the i-th uid's.  Handled like a verdict
	## except that nothing goes to msewatch.log or notice.log: the kept
	## evidence is forgotten, conn.log is labelled, a repeat is counted as
	## a duplicate.
	global flow_labels: event(uids: string, labels: string);

	## Published on the evidence topic a bridge subscribed to, when it
	## subscribes: what this package understands besides the v1 verdicts
	## (``flow_labels``).  A bridge sends compact labels only to a package
	## that said so.
	global hello: event(features: vector of string);

	## The conn.log label of a flow verdict: ``label`` or ``label:protocol``.
	global conn_label_of: function(label: string, protocol: string): string;

	## Whether *protocol* names a protocol guess (not "" nor "unknown").
	global is_protocol_guess: function(protocol: string): bool;

	## Remembers *label* for connection *uid* if that connection lives on
	## this node and still waits for it; it is written to conn.log when the
	## connection is removed.
	global remember_conn_label: function(uid: string, label: string);
}

redef record Conn::Info += {
	## The msewatch verdict of the flow as ``label:protocol`` (or just
	## ``label``), when it arrived before the connection ended.
	msewatch: string &log &optional;
};

# uid -> label ("" while waiting) of the connections on this node whose
# evidence went out and that are still alive.  Bounded by the live
# connections: entries go when the connection does.  A uid that is not there
# reads as "" too (&default, one lookup less per connection): "in" tells
# them apart where it matters.
global awaiting_label: table[string] of string &default="" &create_expire=conn_label_timeout;

# Flow verdicts already logged, by uid, and host verdicts by content.  The
# bridge delivers at least once (a batch cut off by a reconnect is sent
# again, re-published evidence is answered again), so the same verdict can
# arrive twice.
global logged_verdicts: set[string] &create_expire=verdict_dedup_window;
global logged_host_verdicts: set[string] &create_expire=verdict_dedup_window;

global duplicate_verdicts_c = Telemetry::counter_with(Telemetry::register_counter_family(
    Telemetry::MetricOpts($prefix="msewatch", $unit="", $name="verdicts_duplicate",
    $help_text="Verdicts not logged because the same verdict was logged already")));
global unsolicited_verdicts_c = Telemetry::counter_with(Telemetry::register_counter_family(
    Telemetry::MetricOpts($prefix="msewatch", $unit="", $name="verdicts_unsolicited",
    $help_text="Flow verdicts logged for a uid whose evidence this node was not keeping")));

event zeek_init() &priority=5
	{
	Log::create_stream(MSEWatch::LOG, Log::Stream($columns=Info, $ev=log_msewatch,
	                                              $path="msewatch", $policy=log_policy));

	if ( ! is_bridge_node() )
		return;

@if ( Version::at_least("7.1") )
	Cluster::subscribe(verdict_topic);
@else
	Broker::subscribe(verdict_topic);
@endif
	}

function is_protocol_guess(protocol: string): bool
	{
	return protocol != "" && protocol != "unknown";
	}

function conn_label_of(label: string, protocol: string): string
	{
	return is_protocol_guess(protocol) ? fmt("%s:%s", label, protocol) : label;
	}

# --- conn.log entries held for verdicts in flight (Log::delay) -------------
# A connection that ends before its verdict is back (short flows, published
# at their removal, and pcap mode) would be written to conn.log without the
# label.  Its conn.log write is held with Log::delay (Zeek 6.2+) until the
# verdict arrives or conn_log_delay passes; nothing is lost either way (held
# entries are written at shutdown too).

type HeldConnWrite: record {
	rec:   Conn::Info;
	token: Log::DelayToken;
};

# Held conn.log writes by uid.  Bounded by Conn::LOG's delay queue.
global held_conn_writes: table[string] of HeldConnWrite;

# Whether conn.log writes wait for verdicts on this node (set in zeek_init).
global conn_log_waits = F;

function conn_write_released(rec: any, id: Log::ID): bool
	{
	local info = rec as Conn::Info;

	# Deleting a uid that is not there does nothing.
	delete held_conn_writes[info$uid];
	delete awaiting_label[info$uid];

	return T;
	}

# Runs for every write to every log: in an event group that zeek_init
# disables where conn.log entries do not wait for verdicts.
hook Log::log_stream_policy(rec: any, id: Log::ID) &group="msewatch-conn-log-delay"
	{
	if ( id != Conn::LOG || ! conn_log_waits )
		return;

	local info = rec as Conn::Info;
	if ( info$uid !in awaiting_label || awaiting_label[info$uid] != "" )
		return;

	held_conn_writes[info$uid] = HeldConnWrite($rec=info,
	    $token=Log::delay(id, rec, conn_write_released));
	}

event zeek_init() &priority=-5
	{

	conn_log_waits = conn_log_delay > 0 secs && |conn_log_labels| > 0 &&
	                 (Cluster::is_enabled() || wants_listener());

	if ( conn_log_waits )
		Log::set_max_delay_interval(Conn::LOG, conn_log_delay);
	else
		disable_event_group("msewatch-conn-log-delay");
	}
# ---------------------------------------------------------------------------

function remember_conn_label(uid: string, label: string)
	{
	if ( uid in held_conn_writes )
		{
		# The connection has ended: finish its held conn.log write.
		local held = held_conn_writes[uid];
		held$rec$msewatch = label;
		Log::delay_finish(Conn::LOG, held$rec, held$token);
		return;
		}

	if ( uid in awaiting_label )
		awaiting_label[uid] = label;
	}

hook evidence_published(c: connection, ending: bool)
	{
	if ( |conn_log_labels| == 0 )
		return;

	# Also when *ending*: evidence.zeek publishes at removal (priority -2),
	# before the handler below.
	awaiting_label[c$uid] = "";
	}

# Copies the label into conn.log (written at priority -5) if it arrived; a
# handler for all connections rather than a Conn::RemovalHook per flow, which
# would cost a set per connection: the first test decides for most.
event connection_state_remove(c: connection) &priority=-4
	{
	if ( ! c$msewatch_done )
		return;

	# "" if the connection does not wait for a label, or waits still.
	local label = awaiting_label[c$uid];

	if ( label == "" )
		{
		# No verdict yet: keep waiting, the conn.log write is held (above).
		# Otherwise forget it (if it is there).
		if ( ! conn_log_waits )
			delete awaiting_label[c$uid];

		return;
		}

	delete awaiting_label[c$uid];

	if ( c?$conn )
		c$conn$msewatch = label;
	}

# Notices raised within notice_suppression, by type and the parts of their
# $identifier (the local host, and the protocol for P2P_Flow: the identifier
# string is made only for a notice that is raised).  The Notice framework
# would suppress a repeat too, but only after it has been built (messages
# formatted, policy hooks run): on a busy P2P host nearly every flow verdict
# is such a repeat (zeekcore, issue 9: overhead).
global recent_notices: set[Notice::Type, addr, string] &create_expire=notice_suppression;

function suppressed_here(note: Notice::Type, host: addr, protocol: string): bool
	{
	if ( notice_suppression == 0 secs )
		return F;

	# Adding an entry that is there changes nothing (&create_expire keeps its
	# first creation time): the size tells, with one table operation.
	local n = |recent_notices|;
	add recent_notices[note, host, protocol];
	return |recent_notices| == n;
	}

# Runs for every p2p_likely verdict, and most of them are suppressed before
# the notice is built (its identifier string included).
function raise_flow_notice(uid: string, id: conn_id, protocol: string,
                           probability: double, reasons: vector of string)
	{
	local note = protocol == "bt_mse" ? Encrypted_BitTorrent : P2P_Flow;
	local host = local_host(id$orig_h, id$resp_h);

	if ( suppressed_here(note, host, note == Encrypted_BitTorrent ? "" : protocol) )
		return;

	local identifier = note == Encrypted_BitTorrent ? cat(host) : cat(host, protocol);

	local what = note == Encrypted_BitTorrent ? "encrypted BitTorrent (MSE/PE)"
	                                          : fmt("P2P (%s)", is_protocol_guess(protocol) ? protocol : "unknown protocol");

	NOTICE(Notice::Info($note=note,
	                    $msg=fmt("%s -> %s:%s looks like %s (p=%.2f)", id$orig_h,
	                             id$resp_h, id$resp_p, what, probability),
	                    $sub=join_string_vec(reasons, " "),
	                    $uid=uid, $id=id, $src=id$orig_h, $dst=id$resp_h, $p=id$resp_p,
	                    $identifier=identifier,
	                    $suppress_for=notice_suppression));
	}

function raise_host_notice(host: addr, score: double, probability: double,
                           reasons: vector of string)
	{
	if ( suppressed_here(P2P_Host, host, "") )
		return;

	NOTICE(Notice::Info($note=P2P_Host,
	                    $msg=fmt("%s behaves like a P2P client (p=%.2f, score=%.2f)",
	                             host, probability, score),
	                    $sub=join_string_vec(reasons, " "),
	                    $src=host,
	                    $identifier=cat(host),
	                    $suppress_for=notice_suppression));
	}

# One flow verdict: msewatch.log, the notice, the conn.log label.  Runs for
# every verdict the bridge sends, so it does the cheap tests first.
event MSEWatch::verdict(uid: string, orig_h: addr, orig_p: port, resp_h: addr,
    resp_p: port, label: string, protocol: string, probability: double,
    reasons: vector of string, decided_at: time, decided_at_packet: count)
	{
	# One table operation each, the size telling whether the uid was there:
	# adding a uid that is there changes nothing (the set keeps its first
	# creation time for &create_expire), deleting one that is not neither.
	local logged = |logged_verdicts|;
	add logged_verdicts[uid];
	if ( |logged_verdicts| == logged )
		{
		Telemetry::counter_inc(duplicate_verdicts_c);
		return;
		}

	# The kept evidence is forgotten.
	local waiting = |unanswered|;
	delete unanswered[uid];
	if ( |unanswered| == waiting && keeping )
		# After a Zeek restart, or for an expired or unkept flow.
		Telemetry::counter_inc(unsolicited_verdicts_c);

	local guess = protocol != "" && protocol != "unknown";
	local id = conn_id($orig_h=orig_h, $orig_p=orig_p, $resp_h=resp_h, $resp_p=resp_p);
	local rec = Info($ts=decided_at, $uid=uid, $id=id, $kind="flow", $label=label,
	                 $probability=probability, $reasons=reasons,
	                 $decided_at=decided_at, $decided_at_packet=decided_at_packet);
	if ( guess )
		rec$protocol = protocol;

	Log::write(MSEWatch::LOG, rec);

	if ( label == "p2p_likely" )
		raise_flow_notice(uid, id, guess ? protocol : "", probability, reasons);

	# In a cluster the connection lives on a worker: cluster.zeek sends it
	# there.  (Cluster::node == "" is Cluster::is_enabled()'s test, not called
	# once per verdict.)  remember_conn_label() looks the uid up itself.
	if ( label in conn_log_labels && Cluster::node == "" )
		remember_conn_label(uid, guess ? label + ":" + protocol : label);
	}

# Whether a conn.log label (``label`` or ``label:protocol``) is one of
# conn_log_labels.
function conn_log_label_wanted(tag: string): bool
	{
	return tag in conn_log_labels || split_string1(tag, /:/)[0] in conn_log_labels;
	}

# Flow verdicts sent as conn.log labels only: everything MSEWatch::verdict
# does but msewatch.log and the notice.
event MSEWatch::flow_labels(uids: string, labels: string)
	{
	local u = split_string(uids, / /);
	local l = split_string(labels, / /);
	if ( |u| != |l| )
		{
		Reporter::warning(fmt("MSEWatch::flow_labels: %d uids but %d labels; ignored", |u|, |l|));
		return;
		}

	local here = ! Cluster::is_enabled();
	for ( i in u )
		{
		local uid = u[i];
		# As in MSEWatch::verdict: one table operation each.
		local logged = |logged_verdicts|;
		add logged_verdicts[uid];
		if ( |logged_verdicts| == logged )
			{
			Telemetry::counter_inc(duplicate_verdicts_c);
			next;
			}

		local waiting = |unanswered|;
		delete unanswered[uid];
		if ( |unanswered| == waiting && keeping )
			Telemetry::counter_inc(unsolicited_verdicts_c);

		if ( here && conn_log_label_wanted(l[i]) )
			remember_conn_label(uid, l[i]);
		}
	}

@if ( Version::at_least("7.2") )
# Tell a bridge that subscribes to evidence what this package takes.
event Cluster::websocket_client_added(endpoint: Cluster::EndpointInfo, subscriptions: string_vec)
	{
	local topic = evidence_subscription(subscriptions);
	if ( topic != "" )
		Cluster::publish(topic, MSEWatch::hello, vector("flow_labels"));
	}
@endif

event MSEWatch::host_verdict(host: addr, label: string, score: double,
    probability: double, reasons: vector of string, ts: time)
	{
	local key = cat(host, label, ts, score, probability);
	if ( key in logged_host_verdicts )
		{
		Telemetry::counter_inc(duplicate_verdicts_c);
		return;
		}

	add logged_host_verdicts[key];

	Log::write(MSEWatch::LOG, Info($ts=ts, $kind="host", $host=host, $label=label,
	                               $probability=probability, $score=score,
	                               $reasons=reasons));

	if ( label == "p2p_host" )
		raise_host_notice(host, score, probability, reasons);
	}
