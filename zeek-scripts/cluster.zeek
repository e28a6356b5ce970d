##! Cluster: workers record and publish the evidence, the manager talks to
##! the bridge.
##!
##! * Workers publish :zeek:see:`MSEWatch::flow_evidence` on the evidence
##!   topic themselves; the cluster backend carries it to the bridge's
##!   WebSocket connection on the manager (no relay through the manager).
##! * Only the manager subscribes to :zeek:see:`MSEWatch::verdict_topic`.
##!   It writes msewatch.log and raises the notices (verdicts.zeek), so each
##!   verdict is logged once however many workers there are.
##! * The connection a flow verdict is about lives on one worker, which the
##!   manager does not know: it sends the conn.log label to all workers
##!   (:zeek:see:`Cluster::worker_topic`) and the worker that still waits
##!   for that uid keeps it; the others drop it at the cost of one table
##!   lookup.  :zeek:see:`MSEWatch::conn_log_labels` limits this traffic.
##! * The manager also subscribes to the evidence topic and keeps each flow's
##!   evidence until its verdict comes back, to send it again to a bridge
##!   that (re)subscribes (delivery.zeek).  The bridge gets the workers'
##!   publications directly; the manager's copy is only for re-delivery.

@load base/frameworks/cluster
@load ./main
@load ./delivery
@load ./evidence
@load ./verdicts

module MSEWatch;

export {
	## Manager to workers: the conn.log label of flow *uid*.
	global conn_label: event(uid: string, label: string);

	## Manager to workers: the conn.log labels of flows, packed as in
	## :zeek:see:`MSEWatch::flow_labels`.
	global conn_labels: event(uids: string, labels: string);
}

# Standalone nodes do not load the handlers below (they would run for every
# verdict and every flow only to return).
@if ( Cluster::is_enabled() )
event MSEWatch::verdict(uid: string, orig_h: addr, orig_p: port, resp_h: addr,
    resp_p: port, label: string, protocol: string, probability: double,
    reasons: vector of string, decided_at: time, decided_at_packet: count)
	{
	if ( Cluster::local_node_type() != Cluster::MANAGER )
		return;

	if ( label !in conn_log_labels )
		return;

	local tag = conn_label_of(label, protocol);
@if ( Version::at_least("7.1") )
	Cluster::publish(Cluster::worker_topic, MSEWatch::conn_label, uid, tag);
@else
	Broker::publish(Cluster::worker_topic, MSEWatch::conn_label, uid, tag);
@endif
	}

event MSEWatch::conn_label(uid: string, label: string)
	{
	remember_conn_label(uid, label);
	}

# Compact labels: forwarded as they came, or only those in conn_log_labels.
event MSEWatch::flow_labels(uids: string, labels: string)
	{
	if ( Cluster::local_node_type() != Cluster::MANAGER || |conn_log_labels| == 0 )
		return;

	if ( |conn_log_labels| < 3 )
		{
		local u = split_string(uids, / /);
		local l = split_string(labels, / /);
		local fu: vector of string = vector();
		local fl: vector of string = vector();
		for ( i in u )
			if ( i < |l| && conn_log_label_wanted(l[i]) )
				{
				fu += u[i];
				fl += l[i];
				}

		if ( |fu| == 0 )
			return;

		uids = join_string_vec(fu, " ");
		labels = join_string_vec(fl, " ");
		}

@if ( Version::at_least("7.1") )
	Cluster::publish(Cluster::worker_topic, MSEWatch::conn_labels, uids, labels);
@else
	Broker::publish(Cluster::worker_topic, MSEWatch::conn_labels, uids, labels);
@endif
	}

event MSEWatch::conn_labels(uids: string, labels: string)
	{
	local u = split_string(uids, / /);
	local l = split_string(labels, / /);
	for ( i in u )
		if ( i < |l| )
			remember_conn_label(u[i], l[i]);
	}

# The manager keeps the evidence a worker published, for re-delivery.
event MSEWatch::flow_evidence(version: count, uid: string, community_id: string,
    orig_h: addr, orig_p: port, resp_h: addr, resp_p: port, ts: time,
    sizes: string, times: string, bursts: string,
    orig_heads: string, resp_heads: string,
    orig_pkts: count, resp_pkts: count, orig_bytes: count, resp_bytes: count,
    duration: interval, handshake: bool, closed: bool, complete: bool) &priority=-5
	{
	if ( ! is_remote_event() || ! keeps_evidence() )
		return;

@if ( Version::at_least("7.1") )
	local ev = Cluster::make_event(MSEWatch::flow_evidence, version, uid, community_id,
	    orig_h, orig_p, resp_h, resp_p, ts, sizes, times, bursts, orig_heads,
	    resp_heads, orig_pkts, resp_pkts, orig_bytes, resp_bytes, duration,
	    handshake, closed, complete);
@else
	local ev = Broker::make_event(MSEWatch::flow_evidence, version, uid, community_id,
	    orig_h, orig_p, resp_h, resp_p, ts, sizes, times, bursts, orig_heads,
	    resp_heads, orig_pkts, resp_pkts, orig_bytes, resp_bytes, duration,
	    handshake, closed, complete);
@endif

	keep_evidence(uid, evidence_topic_for(orig_h, resp_h), ev);
	}
@endif
