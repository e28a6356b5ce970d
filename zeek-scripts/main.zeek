##! msewatch: the options shared by the package and the WebSocket listener
##! the Python bridge connects to.
##!
##! The package collects bounded early-connection evidence (evidence.zeek),
##! publishes it as :zeek:see:`MSEWatch::flow_evidence` and takes verdicts
##! back (verdicts.zeek).  The wire contract is docs/evidence.md.

@load base/misc/version
@load base/utils/site
@load base/frameworks/cluster

module MSEWatch;

export {
	## Version of the evidence contract sent as the first argument of
	## every :zeek:see:`MSEWatch::flow_evidence`: 2, the per-packet values
	## packed into strings (docs/evidence.md; bridges read 1 and 2).
	const evidence_version = 2;

	## Evidence budget: payload-bearing packets recorded per flow in
	## ``sizes`` and ``times`` (N).
	option max_packets: count = 32;

	## Evidence budget: direction runs recorded per flow in ``bursts`` (K).
	## The payload packet that would open run K+1 ends the recording.
	option max_bursts: count = 8;

	## Evidence budget: bytes kept of each recorded head (H).  Values above
	## 256 are treated as 256.
	option head_bytes: count = 256;

	## Evidence budget: UDP datagrams per direction whose heads are kept.
	## TCP keeps the head of the first payload packet of each direction.
	option udp_heads: count = 4;

	## Evidence budget: recording stops this long after the flow's first
	## packet; the evidence is then published.
	option max_age: interval = 10 sec;

	## Topic :zeek:see:`MSEWatch::flow_evidence` is published on.  With
	## :zeek:see:`MSEWatch::shard_count` > 1 the shard is appended as
	## ``/<n>/``: the trailing slash keeps a bridge subscribed to shard 1
	## from also matching shards 10-19 (topics match by prefix).
	const evidence_topic = "zeek/msewatch/evidence" &redef;

	## Topic the bridge publishes :zeek:see:`MSEWatch::verdict` and
	## :zeek:see:`MSEWatch::host_verdict` on.  Zeek subscribes to it in
	## ``zeek_init``, on the standalone node or on the manager.
	const verdict_topic = "zeek/msewatch/verdict" &redef;

	## Number of bridges sharing the evidence.  With more than one, every
	## flow goes to ``evidence_topic + "/" + n + "/"`` where *n* (0 .. N-1) is a
	## hash of the flow's local host (see :zeek:see:`MSEWatch::local_host`),
	## so all flows of one host meet in one bridge.
	const shard_count: count = 1 &redef;

	## Whether to start a WebSocket server for the bridge.  It is started
	## only where a bridge can use it: on a cluster's manager, on a
	## standalone Zeek reading live traffic, and on a standalone Zeek
	## reading a pcap with :zeek:see:`MSEWatch::pcap_wait_for_bridge`.  A
	## plain ``zeek -r trace.pcap`` does not listen (a listener keeps Zeek
	## running after the trace ends).  Turn this off when something else
	## already runs a server (zeekctl's ``UseWebSocket``, the 8.1+ default).
	const listen = T &redef;

	## Address of the WebSocket server.  The API has no authentication:
	## keep it on loopback or behind a reverse proxy.
	const listen_addr: addr = 127.0.0.1 &redef;

@if ( Version::at_least("7.2") )
	## Port of the WebSocket server (``ws://listen_addr:listen_port/v1/messages/json``).
	const listen_port: port = 27759/tcp &redef;
@else
	## Port of the WebSocket server.  Zeek 7.0/7.1 serve it through Broker,
	## with TLS unless ``Broker::disable_ssl`` is set.
	const listen_port: port = Broker::default_port_websocket &redef;
@endif

	## Reading a pcap: hold packet processing until a bridge subscribed to
	## the evidence topic connects, and stay up until every published flow
	## has its verdict.  Needs ``exit_only_after_terminate = T`` (load
	## ``msewatch/wait-for-bridge`` to set both) and Zeek 7.2 or later.
	option pcap_wait_for_bridge = F;

	## The local end of a flow: the originator if it is in
	## ``Site::local_nets``, else the responder if that one is, else the
	## originator.  Shards and notice suppression are keyed on it.
	global local_host: function(orig_h: addr, resp_h: addr): addr;

	## The evidence topic for a flow between *orig_h* and *resp_h*.
	global evidence_topic_for: function(orig_h: addr, resp_h: addr): string;

	## Whether this node talks to the bridge: it listens, subscribes to
	## verdicts, writes msewatch.log and raises the notices.  True on a
	## standalone Zeek and on a cluster's manager.
	global is_bridge_node: function(): bool;

	## Whether this node starts the WebSocket server: see
	## :zeek:see:`MSEWatch::listen`.
	global wants_listener: function(): bool;
}

function local_host(orig_h: addr, resp_h: addr): addr
	{
	if ( Site::is_local_addr(orig_h) || ! Site::is_local_addr(resp_h) )
		return orig_h;

	return resp_h;
	}

# A stable hash (the same on every node and after restarts), so that all
# workers send a host's flows to the same shard.
function shard_of(h: addr): count
	{
	local digest = md5_hash(cat(h));
	return bytestring_to_count(hexstr_to_bytestring(digest[0:8])) % shard_count;
	}

function evidence_topic_for(orig_h: addr, resp_h: addr): string
	{
	if ( shard_count <= 1 )
		return evidence_topic;

	return fmt("%s/%d/", evidence_topic, shard_of(local_host(orig_h, resp_h)));
	}

function is_bridge_node(): bool
	{
	return ! Cluster::is_enabled() || Cluster::local_node_type() == Cluster::MANAGER;
	}

function wants_listener(): bool
	{
	if ( ! listen || ! is_bridge_node() )
		return F;

	if ( Cluster::is_enabled() || reading_live_traffic() )
		return T;

	return reading_traces() && pcap_wait_for_bridge;
	}

# Zeek 8.0 added $listen_addr and deprecated $listen_host (removed in 8.1);
# 7.2 has only $listen_host; 7.0/7.1 have Broker's server only (Zeek's NEWS
# for 7.2.0 and 8.0.0).  Only the 8.0 branch ran on a real Zeek (8.0.10).
function start_websocket_server(): bool
	{
@if ( Version::at_least("8.0") )
	return Cluster::listen_websocket(Cluster::WebSocketServerOptions(
	    $listen_addr=listen_addr, $listen_port=listen_port));
@else
@if ( Version::at_least("7.2") )
	return Cluster::listen_websocket(Cluster::WebSocketServerOptions(
	    $listen_host=cat(listen_addr), $listen_port=listen_port));
@else
	# Broker::listen_websocket() returns 0/tcp when it cannot listen.
	return Broker::listen_websocket(cat(listen_addr), listen_port) != 0/tcp;
@endif
@endif
	}

event zeek_init()
	{
	if ( ! wants_listener() )
		return;

	if ( start_websocket_server() )
		return;

	local msg = fmt("MSEWatch: cannot listen for the bridge on %s:%s", listen_addr, listen_port);

	# Reading a pcap for a bridge, Zeek would wait for a bridge that cannot
	# come: stop with the reason instead.
	if ( reading_traces() )
		Reporter::fatal(msg);
	else
		Reporter::error(msg);
	}
