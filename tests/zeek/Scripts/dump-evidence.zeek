# Test helper: prints every MSEWatch::flow_evidence as one JSON object per
# line, with the field names of docs/evidence.md (ports as numbers plus
# "proto", times and durations as seconds), so that it can be compared with
# `msewatch evidence PCAP`.  to_json() renders an interval as text such as
# "358.0 usecs", hence the conversion to double.

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

event MSEWatch::flow_evidence(version: count, uid: string, community_id: string,
    orig_h: addr, orig_p: port, resp_h: addr, resp_p: port, ts: time,
    sizes: vector of int, times: vector of interval, bursts: vector of int,
    orig_heads: vector of string, resp_heads: vector of string,
    orig_pkts: count, resp_pkts: count, orig_bytes: count, resp_bytes: count,
    duration: interval, handshake: bool, closed: bool, complete: bool)
	{
	local secs: vector of double = vector();
	for ( i in times )
		secs += interval_to_double(times[i]);

	print to_json(EvidenceLine($version=version,
	                           $proto=cat(get_port_transport_proto(resp_p)),
	                           $uid=uid, $community_id=community_id,
	                           $orig_h=orig_h, $orig_p=port_to_count(orig_p),
	                           $resp_h=resp_h, $resp_p=port_to_count(resp_p),
	                           $ts=ts, $sizes=sizes, $times=secs, $bursts=bursts,
	                           $orig_heads=orig_heads, $resp_heads=resp_heads,
	                           $orig_pkts=orig_pkts, $resp_pkts=resp_pkts,
	                           $orig_bytes=orig_bytes, $resp_bytes=resp_bytes,
	                           $duration=interval_to_double(duration), $handshake=handshake,
	                           $closed=closed, $complete=complete));
	}
