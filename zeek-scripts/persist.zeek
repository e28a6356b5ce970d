##! Unanswered evidence across a graceful Zeek restart (docs/zeek.md,
##! "Restarts and delivery").
##!
##! At a graceful stop Zeek publishes the evidence of the flows it is still
##! recording, but stops forwarding to WebSocket clients before that evidence
##! leaves; and the flows whose verdict has not come back are forgotten with
##! the process.  So the node that keeps evidence (delivery.zeek) writes what
##! is still unanswered to :zeek:see:`MSEWatch::unanswered_file` in
##! ``zeek_done`` and reads it back at its next start, where it waits for a
##! bridge like any other unanswered evidence.  The verdicts are then logged by
##! the new Zeek (msewatch.log carries the uid; the old conn.log has no label).
##! A file saved by an older package (evidence version 1, typed vectors) is
##! read too: its evidence is packed into version 2 and sent as such.

@load base/frameworks/input
@load base/frameworks/telemetry
@load ./main
@load ./delivery
@load ./evidence

module MSEWatch;

export {
	## At a graceful stop the evidence still waiting for its verdict is
	## written to this file (JSON lines, relative to Zeek's working
	## directory) and read back at the next start.  The file is removed once
	## read.  "" turns this off.  A killed Zeek saves nothing; a Zeek
	## reading a trace neither saves nor restores (one trace's flows are not
	## another's).
	const unanswered_file = "msewatch_unanswered.json" &redef;
}

global saved_c = Telemetry::counter_with(Telemetry::register_counter_family(
    Telemetry::MetricOpts($prefix="msewatch", $unit="", $name="evidence_saved",
    $help_text="Unanswered flow evidence written to unanswered_file at a graceful stop")));
global restored_c = Telemetry::counter_with(Telemetry::register_counter_family(
    Telemetry::MetricOpts($prefix="msewatch", $unit="", $name="evidence_restored",
    $help_text="Unanswered flow evidence read back from unanswered_file at start")));

# The flow_evidence arguments, by name, as saved in unanswered_file.
type SavedEvidence: record {
	topic: string;
	since: time;
	version: count;
	uid: string;
	community_id: string;
	orig_h: addr;
	orig_p: port;
	resp_h: addr;
	resp_p: port;
	ts: time;
	sizes: string;
	times: string;
	bursts: string;
	orig_heads: string;
	resp_heads: string;
	orig_pkts: count;
	resp_pkts: count;
	orig_bytes: count;
	resp_bytes: count;
	duration: interval;
	handshake: bool;
	closed: bool;
	complete: bool;
};

# The same as an older package saved it (evidence version 1).
type SavedEvidenceV1: record {
	topic: string;
	since: time;
	version: count;
	uid: string;
	community_id: string;
	orig_h: addr;
	orig_p: port;
	resp_h: addr;
	resp_p: port;
	ts: time;
	sizes: vector of int;
	times: vector of interval;
	bursts: vector of int;
	orig_heads: vector of string;
	resp_heads: vector of string;
	orig_pkts: count;
	resp_pkts: count;
	orig_bytes: count;
	resp_bytes: count;
	duration: interval;
	handshake: bool;
	closed: bool;
	complete: bool;
};

const saved_arg_names = vector("version", "uid", "community_id", "orig_h", "orig_p",
    "resp_h", "resp_p", "ts", "sizes", "times", "bursts", "orig_heads", "resp_heads",
    "orig_pkts", "resp_pkts", "orig_bytes", "resp_bytes", "duration", "handshake",
    "closed", "complete");

type SavedLine: record {
	line: string;
};

global restore_line: event(desc: Input::EventDescription, tpe: Input::Event, line: string);

global restored = 0;
global restored_v1 = 0;

function from_v1(e: SavedEvidenceV1): SavedEvidence
	{
	return SavedEvidence($topic=e$topic, $since=e$since, $version=evidence_version,
	    $uid=e$uid, $community_id=e$community_id, $orig_h=e$orig_h, $orig_p=e$orig_p,
	    $resp_h=e$resp_h, $resp_p=e$resp_p, $ts=e$ts, $sizes=pack_ints(e$sizes),
	    $times=pack_times(e$times), $bursts=pack_ints(e$bursts),
	    $orig_heads=pack_heads(e$orig_heads), $resp_heads=pack_heads(e$resp_heads),
	    $orig_pkts=e$orig_pkts, $resp_pkts=e$resp_pkts, $orig_bytes=e$orig_bytes,
	    $resp_bytes=e$resp_bytes, $duration=e$duration, $handshake=e$handshake,
	    $closed=e$closed, $complete=e$complete);
	}

function saved_json(u: Unanswered): string
	{
	local parts = vector(fmt("\"topic\":%s", to_json(u$topic)),
	                     fmt("\"since\":%s", to_json(u$since)));
	for ( i in u$ev$args )
		parts += fmt("\"%s\":%s", saved_arg_names[i], to_json(u$ev$args[i]));

	return "{" + join_string_vec(parts, ",") + "}";
	}

# Runs after the connections were flushed: the evidence published during the
# shutdown is in the table.
event zeek_done() &priority=-10
	{
	if ( unanswered_file == "" || ! keeps_evidence() || reading_traces() || |unanswered| == 0 )
		return;

	local f = open(unanswered_file);
	for ( uid, u in unanswered )
		{
		print f, saved_json(u);
		Telemetry::counter_inc(saved_c);
		}
	close(f);
	Reporter::info(fmt("MSEWatch: %d flows still waiting for their verdict saved to %s",
	                   |unanswered|, unanswered_file));
	}

event zeek_init() &priority=-5
	{
	if ( unanswered_file == "" || ! keeps_evidence() || reading_traces() ||
	     file_size(unanswered_file) < 0.0 )
		return;

	Input::add_event(Input::EventDescription($source=unanswered_file,
	    $reader=Input::READER_RAW, $mode=Input::MANUAL, $name="msewatch-unanswered",
	    $fields=SavedLine, $want_record=F, $ev=restore_line));
	}

event restore_line(desc: Input::EventDescription, tpe: Input::Event, line: string)
	{
	local r = from_json(line, SavedEvidence);
	local e: SavedEvidence;
	local v1 = F;
	if ( r$valid )
		e = r$v as SavedEvidence;
	else
		{
		local r1 = from_json(line, SavedEvidenceV1);
		if ( ! r1$valid )
			{
			Reporter::warning(fmt("MSEWatch: %s: unreadable line skipped: %s", unanswered_file, r$err));
			return;
			}

		e = from_v1(r1$v as SavedEvidenceV1);
		v1 = T;
		}

	if ( e$uid in unanswered )
		return;

@if ( Version::at_least("7.1") )
	local ev = Cluster::make_event(MSEWatch::flow_evidence, e$version, e$uid,
	    e$community_id, e$orig_h, e$orig_p, e$resp_h, e$resp_p, e$ts, e$sizes, e$times,
	    e$bursts, e$orig_heads, e$resp_heads, e$orig_pkts, e$resp_pkts, e$orig_bytes,
	    e$resp_bytes, e$duration, e$handshake, e$closed, e$complete);
@else
	local ev = Broker::make_event(MSEWatch::flow_evidence, e$version, e$uid,
	    e$community_id, e$orig_h, e$orig_p, e$resp_h, e$resp_p, e$ts, e$sizes, e$times,
	    e$bursts, e$orig_heads, e$resp_heads, e$orig_pkts, e$resp_pkts, e$orig_bytes,
	    e$resp_bytes, e$duration, e$handshake, e$closed, e$complete);
@endif

	if ( ! keep_evidence(e$uid, e$topic, ev) )
		return;

	unanswered[e$uid]$since = e$since;
	++restored;
	if ( v1 )
		++restored_v1;
	Telemetry::counter_inc(restored_c);

	if ( bridge_subscribed(e$topic) )
		{
		publish_message(e$topic, ev);
		Telemetry::counter_inc(resent_c);
		}
	}

event Input::end_of_data(name: string, source: string)
	{
	if ( name != "msewatch-unanswered" )
		return;

	Input::remove(name);
	unlink(unanswered_file);
	Reporter::info(fmt("MSEWatch: %d flows waiting for their verdict restored from %s%s",
	                   restored, unanswered_file,
	                   restored_v1 > 0 ? fmt(" (%d saved as evidence version 1, sent as version 2)",
	                                         restored_v1) : ""));
	}
