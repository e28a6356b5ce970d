##! Delivering flow evidence to the bridge at least once, across bridge
##! restarts (docs/zeek.md, "Restarts and delivery").
##!
##! WebSocket pub/sub keeps nothing: evidence published while no bridge is
##! subscribed, or read by a bridge that dies before it answers, is gone.  So
##! the node that talks to the bridge (standalone Zeek, or a cluster's manager)
##! keeps each flow's evidence until the flow's verdict comes back:
##!
##! * While no bridge is subscribed to a flow's topic, its evidence is kept
##!   and not published (nothing is serialised into the void).
##! * When a bridge subscribes (:zeek:see:`Cluster::websocket_client_added`),
##!   the unanswered evidence on its topics is published again, in batches.
##! * Evidence still unanswered :zeek:see:`MSEWatch::resend_after` after it
##!   was last sent is sent again while a bridge is subscribed, until
##!   :zeek:see:`MSEWatch::unanswered_timeout`.
##! * A flow verdict removes its flow (verdicts.zeek logs a uid once).
##!
##! The bridge answers evidence for a uid it has already decided from its
##! cache, without deciding (and counting the flow) again.
##!
##! In a cluster the workers publish every flow's evidence at once, as before;
##! the manager, which talks to the bridge and receives the verdicts, also
##! subscribes to the evidence topic and keeps its copy.
##!
##! Counters (Telemetry framework, prefix ``msewatch``, on the node that
##! keeps the evidence): ``evidence_published``, ``evidence_held``,
##! ``evidence_resent``, ``evidence_expired``, ``evidence_unkept``,
##! ``evidence_unsent`` and the gauge ``evidence_unanswered``.

@load base/frameworks/cluster
@load base/frameworks/telemetry
@load ./main

module MSEWatch;

export {
@if ( Version::at_least("7.1") )
	## An evidence event made ready for publication.
	type EvidenceMessage: Cluster::Event;
@else
	type EvidenceMessage: Broker::Event;
@endif

	## Whether the node that talks to the bridge keeps each flow's evidence
	## until its verdict arrives and sends it again when a bridge subscribes.
	## Off: evidence is published once, lost if no bridge is there.  Reading
	## a trace without :zeek:see:`MSEWatch::pcap_wait_for_bridge` nothing is
	## kept (no bridge is expected) and evidence goes only to a bridge that
	## happens to be subscribed.
	const keep_unanswered = T &redef;

	## At most this many flows wait for their verdict.  Evidence beyond it is
	## published once and not kept (``evidence_unkept``).  Each entry holds
	## one flow's evidence (about 0.5-4 KB).
	const max_unanswered: count = 100000 &redef;

	## Evidence unanswered this long is given up (``evidence_expired``).
	const unanswered_timeout: interval = 15 min &redef;

	## Evidence unanswered this long after it was last sent is sent again
	## while a bridge is subscribed to its topic.  A bridge that already
	## answered the uid answers from its cache.
	const resend_after: interval = 1 min &redef;

	## Flows published per batch when a bridge subscribes; the next batch
	## follows after :zeek:see:`MSEWatch::resend_pause`.
	const resend_batch: count = 1000 &redef;

	## Pause between two batches of re-published evidence.
	const resend_pause: interval = 50 msec &redef;

	## Sends (or keeps) the evidence of flow *uid* published on *topic*.
	## evidence.zeek calls it for every flow recorded on this node.
	global deliver_evidence: function(uid: string, topic: string, ev: EvidenceMessage);

	## Whether evidence on *topic* would be published or kept now; if not
	## (reading a trace with no bridge subscribed) it is counted as unsent
	## and evidence.zeek does not make it ready for publication.
	global evidence_wanted: function(topic: string): bool;

	## The flow *uid* has its verdict: stop keeping its evidence.
	global evidence_answered: function(uid: string);

	## Whether a WebSocket client (a bridge) is subscribed to *topic* or a
	## prefix of it on this node.
	global bridge_subscribed: function(topic: string): bool;

	## Keeps *ev* for flow *uid* until its verdict arrives, without
	## publishing it; F if the table is full.  The manager keeps what the
	## workers publish with it (cluster.zeek).
	global keep_evidence: function(uid: string, topic: string, ev: EvidenceMessage): bool;

	## Whether this node keeps evidence for re-delivery: the node that talks
	## to the bridge, with :zeek:see:`MSEWatch::keep_unanswered` on.
	global keeps_evidence: function(): bool;
}

type Unanswered: record {
	topic: string;
	ev:    EvidenceMessage;
	# When it was kept; it is given up unanswered_timeout later.
	since: time;
};

global unanswered_expired: function(t: table[string] of Unanswered, uid: string): interval;

# Flows whose verdict has not come back, by uid.  An entry's expiry is the
# moment to send it again (resend_after); unanswered_expired() decides.
global unanswered: table[string] of Unanswered
	&create_expire=resend_after &expire_func=unanswered_expired;

# Topic prefixes each connected WebSocket client subscribed to, by endpoint id.
global client_topics: table[string] of string_vec;

# bridge_subscribed() per topic, until the clients change.
global subscribed_cache: table[string] of bool;

# The topic bridge_subscribed() answered last, and its answer, until the
# clients change: unless sharded every flow asks about the same topic, and
# comparing a string costs less than the two table lookups of the cache.
global last_topic = "";
global last_topic_known = F;
global last_topic_subscribed = F;

# uids waiting to be re-published to a client that subscribed.
global resend_queue: vector of string;
global resend_running = F;
global resend_next: event();

global published_c = Telemetry::counter_with(Telemetry::register_counter_family(
    Telemetry::MetricOpts($prefix="msewatch", $unit="", $name="evidence_published",
    $help_text="Flow evidence published to a subscribed bridge the first time")));
global held_c = Telemetry::counter_with(Telemetry::register_counter_family(
    Telemetry::MetricOpts($prefix="msewatch", $unit="", $name="evidence_held",
    $help_text="Flow evidence kept unpublished because no bridge was subscribed")));
global resent_c = Telemetry::counter_with(Telemetry::register_counter_family(
    Telemetry::MetricOpts($prefix="msewatch", $unit="", $name="evidence_resent",
    $help_text="Flow evidence published again (a bridge subscribed, or no verdict after resend_after)")));
global expired_c = Telemetry::counter_with(Telemetry::register_counter_family(
    Telemetry::MetricOpts($prefix="msewatch", $unit="", $name="evidence_expired",
    $help_text="Flow evidence given up without a verdict after unanswered_timeout")));
global unsent_c = Telemetry::counter_with(Telemetry::register_counter_family(
    Telemetry::MetricOpts($prefix="msewatch", $unit="", $name="evidence_unsent",
    $help_text="Flow evidence neither published nor kept: reading a trace with no bridge subscribed")));
global unkept_c = Telemetry::counter_with(Telemetry::register_counter_family(
    Telemetry::MetricOpts($prefix="msewatch", $unit="", $name="evidence_unkept",
    $help_text="Flow evidence not kept for re-delivery because max_unanswered flows were waiting")));
global unanswered_g = Telemetry::gauge_with(Telemetry::register_gauge_family(
    Telemetry::MetricOpts($prefix="msewatch", $unit="", $name="evidence_unanswered",
    $help_text="Flows whose evidence waits for its verdict")));

function keeps_evidence(): bool
	{
	return keep_unanswered && is_bridge_node() &&
	       ( ! reading_traces() || pcap_wait_for_bridge );
	}

# keeps_evidence() and whether every flow is published (a worker, or keeping
# off), as of zeek_init: they are asked once per flow.
global keeping = F;
global publishing_all = F;

event zeek_init() &priority=10
	{
	keeping = keeps_evidence();
	publishing_all = ! keep_unanswered || ! is_bridge_node();
	}

function publish_message(topic: string, ev: EvidenceMessage)
	{
@if ( Version::at_least("7.1") )
	Cluster::publish(topic, ev);
@else
	Broker::publish(topic, ev);
@endif
	}

function bridge_subscribed(topic: string): bool
	{
	if ( last_topic_known && topic == last_topic )
		return last_topic_subscribed;

	local yes = F;
	if ( topic in subscribed_cache )
		yes = subscribed_cache[topic];
	else
		{
		for ( id, topics in client_topics )
			for ( i in topics )
				if ( starts_with(topic, topics[i]) )
					yes = T;

		subscribed_cache[topic] = yes;
		}

	last_topic = topic;
	last_topic_known = T;
	last_topic_subscribed = yes;
	return yes;
	}

# The clients changed: bridge_subscribed() asks them again.
function forget_subscriptions()
	{
	subscribed_cache = table();
	last_topic_known = F;
	}

function keep_evidence(uid: string, topic: string, ev: EvidenceMessage): bool
	{
	if ( uid in unanswered )
		return T;

	if ( |unanswered| >= max_unanswered )
		{
		Telemetry::counter_inc(unkept_c);
		return F;
		}

	unanswered[uid] = Unanswered($topic=topic, $ev=ev, $since=network_time());
	return T;
	}

# Flows counted as unsent since the last Telemetry::sync (a trace read with no
# bridge has one per flow: cheaper to add them up at collection time).
global unsent_pending = 0;

function evidence_wanted(topic: string): bool
	{
	if ( publishing_all || keeping || bridge_subscribed(topic) )
		return T;

	++unsent_pending;
	return F;
	}

# Flows published or held since the last Telemetry::sync: counted once per
# flow, added up at collection time as unsent_pending.
global published_pending = 0;
global held_pending = 0;

# Runs once per flow: bridge_subscribed()'s last answer is read here rather
# than through a call, the publication is not wrapped in publish_message() and
# the counters wait for Telemetry::sync (each script call costs about as much
# as the rest of this function).
function deliver_evidence(uid: string, topic: string, ev: EvidenceMessage)
	{
	if ( publishing_all )
		{
		# A worker (the manager keeps the copy it receives), or keeping is off.
		publish_message(topic, ev);
		return;
		}

	local kept = keeping && keep_evidence(uid, topic, ev);
	local subscribed = ( last_topic_known && topic == last_topic ) ? last_topic_subscribed
	                                                             : bridge_subscribed(topic);

	if ( subscribed )
		{
@if ( Version::at_least("7.1") )
		Cluster::publish(topic, ev);
@else
		Broker::publish(topic, ev);
@endif
		++published_pending;
		return;
		}

	# Without a bridge, publishing would serialise the event for nobody.
	if ( kept )
		++held_pending;
	else if ( keeping )
		# The table is full: send it anyway, a bridge may just be subscribing.
		publish_message(topic, ev);
	else
		Telemetry::counter_inc(unsent_c);
	}

function evidence_answered(uid: string)
	{
	if ( uid in unanswered )
		delete unanswered[uid];
	}

function unanswered_expired(t: table[string] of Unanswered, uid: string): interval
	{
	local u = t[uid];

	if ( network_time() - u$since >= unanswered_timeout )
		{
		Telemetry::counter_inc(expired_c);
		return 0 secs;
		}

	if ( bridge_subscribed(u$topic) )
		{
		publish_message(u$topic, u$ev);
		Telemetry::counter_inc(resent_c);
		}

	return resend_after;
	}

hook Telemetry::sync()
	{
	Telemetry::gauge_set(unanswered_g, |unanswered|);

	if ( unsent_pending > 0 )
		{
		Telemetry::counter_inc(unsent_c, 1.0 * unsent_pending);
		unsent_pending = 0;
		}

	if ( published_pending > 0 )
		{
		Telemetry::counter_inc(published_c, 1.0 * published_pending);
		published_pending = 0;
		}

	if ( held_pending > 0 )
		{
		Telemetry::counter_inc(held_c, 1.0 * held_pending);
		held_pending = 0;
		}
	}

# Publishes the next batch of resend_queue; schedules the rest.  Reading a
# trace, timers only move with the packets: send everything at once there.
event resend_next()
	{
	local n = 0;
	local left: vector of string = vector();

	for ( i in resend_queue )
		{
		local uid = resend_queue[i];
		if ( n >= resend_batch && ! reading_traces() )
			{
			left += uid;
			next;
			}

		if ( uid !in unanswered )
			next;

		local u = unanswered[uid];
		if ( ! bridge_subscribed(u$topic) )
			next;

		publish_message(u$topic, u$ev);
		Telemetry::counter_inc(resent_c);
		++n;
		}

	resend_queue = left;
	if ( |resend_queue| > 0 )
		schedule resend_pause { resend_next() };
	else
		resend_running = F;
	}

function covered_by(topic: string, subscriptions: string_vec): bool
	{
	for ( i in subscriptions )
		if ( starts_with(topic, subscriptions[i]) )
			return T;

	return F;
	}

# The first of a client's subscriptions that is an evidence topic (or a
# prefix or shard of it); "" if none is.
function evidence_subscription(subscriptions: string_vec): string
	{
	for ( i in subscriptions )
		if ( starts_with(evidence_topic, subscriptions[i]) ||
		     starts_with(subscriptions[i], evidence_topic) )
			return subscriptions[i];

	return "";
	}

# A client subscribed to an evidence topic (or a prefix or shard of it).
function subscribes_to_evidence_topics(subscriptions: string_vec): bool
	{
	return evidence_subscription(subscriptions) != "";
	}

event zeek_init()
	{
	# The manager keeps the workers' evidence: it must receive it.
	if ( ! keeps_evidence() || ! Cluster::is_enabled() )
		return;

@if ( Version::at_least("7.1") )
	Cluster::subscribe(evidence_topic);
@else
	Broker::subscribe(evidence_topic);
@endif
	}

@if ( Version::at_least("7.2") )
event Cluster::websocket_client_added(endpoint: Cluster::EndpointInfo, subscriptions: string_vec)
	{
	if ( ! subscribes_to_evidence_topics(subscriptions) )
		return;

	client_topics[endpoint$id] = subscriptions;
	forget_subscriptions();

	if ( ! keeps_evidence() )
		return;

	# Everything unanswered on its topics: evidence held while no bridge was
	# there, and evidence a bridge that went away may never have answered.
	for ( uid, u in unanswered )
		if ( covered_by(u$topic, subscriptions) )
			resend_queue += uid;

	if ( ! resend_running && |resend_queue| > 0 )
		{
		resend_running = T;
		event resend_next();
		}
	}

event Cluster::websocket_client_lost(endpoint: Cluster::EndpointInfo, code: count, reason: string)
	{
	if ( endpoint$id !in client_topics )
		return;

	delete client_topics[endpoint$id];
	forget_subscriptions();
	}
@endif
