# Test helper: prints every MSEWatch::flow_evidence as one JSON object per
# line, with the field names of docs/evidence.md (ports as numbers plus
# "proto", times and durations as seconds), so that it can be compared with
# `msewatch evidence PCAP`: the packed strings of evidence version 2 unpacked
# (times from ns to seconds; to_json() would render an interval as text such
# as "358.0 usecs").

module MSEWatchTest;


type EvidenceLine: record {
	version:      count;
	proto:        string;
	uid:          string;
	community_id: string;
	orig_h:       addr;
	orig_p:       count;
	resp_h:       addr;
	resp_p:       count;
	ts:           time;
	sizes:        vector of int;
	times:        vector of double;
	bursts:       vector of int;
	orig_heads:   vector of string;
	resp_heads:   vector of string;
	orig_pkts:    count;
	resp_pkts:    count;
	orig_bytes:   count;
	resp_bytes:   count;
	duration:     double;
	handshake:    bool;
	closed:       bool;
	complete:     bool;
};

function ints(s: string): vector of int
	{
	local out: vector of int = vector();
	if ( s == "" )
		return out;

	for ( i, x in split_string(s, /,/) )
		out += to_int(x);

	return out;
	}

function seconds(s: string): vector of double
	{
	local out: vector of double = vector();
	if ( s == "" )
		return out;

	for ( i, x in split_string(s, /,/) )
		out += to_double(x) / 1e9;

	return out;
	}

function heads(s: string): vector of string
	{
	local out: vector of string = vector();
	if ( s == "" )
		return out;

	local parts = split_string(s, /,/);
	for ( i in parts )
		if ( i < |parts| - 1 )  # each head is followed by ","
			out += parts[i];

	return out;
	}

event MSEWatch::flow_evidence(version: count, uid: string, community_id: string,
    orig_h: addr, orig_p: port, resp_h: addr, resp_p: port, ts: time,
    sizes: string, times: string, bursts: string,
    orig_heads: string, resp_heads: string,
    orig_pkts: count, resp_pkts: count, orig_bytes: count, resp_bytes: count,
    duration: interval, handshake: bool, closed: bool, complete: bool)
	{
	print to_json(EvidenceLine($version=version,
	                           $proto=cat(get_port_transport_proto(resp_p)),
	                           $uid=uid, $community_id=community_id,
	                           $orig_h=orig_h, $orig_p=port_to_count(orig_p),
	                           $resp_h=resp_h, $resp_p=port_to_count(resp_p),
	                           $ts=ts, $sizes=ints(sizes), $times=seconds(times),
	                           $bursts=ints(bursts), $orig_heads=heads(orig_heads),
	                           $resp_heads=heads(resp_heads),
	                           $orig_pkts=orig_pkts, $resp_pkts=resp_pkts,
	                           $orig_bytes=orig_bytes, $resp_bytes=resp_bytes,
	                           $duration=interval_to_double(duration), $handshake=handshake,
	                           $closed=closed, $complete=complete));
	}
