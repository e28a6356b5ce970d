# @TEST-DOC: The real bridge (`msewatch run`, default zeek.full_verdicts) in pcap mode on a real capture: p2p_likely flows come back as full verdicts (msewatch.log, once each), the others as compact labels (MSEWatch::flow_labels, after the package's hello); every TCP/UDP connection has its conn.log label and Zeek exits.
#
# @TEST-REQUIRES: test -f $TRACES/swarm.pcap
# @TEST-REQUIRES: zeek -e 'event zeek_init() { if ( ! Version::at_least("7.2") ) exit(1); }'
# @TEST-REQUIRES: msewatch run --help >/dev/null 2>&1
# @TEST-PORT: WEBSOCKET_PORT
#
# @TEST-EXEC: printf 'zeek:\n  endpoints: ["ws://127.0.0.1:%s/v1/messages/json"]\n  reconnect: {initial: 0.1, max: 0.5}\nmetrics: {enabled: false}\n' "${WEBSOCKET_PORT%/tcp}" >bridge.yaml
# @TEST-EXEC: btest-bg-run bridge "sh -c 'echo \$\$ >pid; exec msewatch run -c ../bridge.yaml'"
# @TEST-EXEC: timeout 300 zeek -C -r $TRACES/swarm.pcap $PACKAGE $PACKAGE/wait-for-bridge.zeek %INPUT || { kill $(cat bridge/pid); false; }
# (btest-bg-wait's SIGHUP would only make the bridge reopen its logs)
# @TEST-EXEC: kill $(cat bridge/pid)
# @TEST-EXEC: btest-bg-wait 30
# @TEST-EXEC: grep -q 'takes compact labels' bridge/.stderr || { cat bridge/.stderr; false; }
# @TEST-EXEC: zeek-cut kind uid label <msewatch.log | awk '$1 == "flow"' >flows.cut
# @TEST-EXEC: test "$(awk '$3 != "p2p_likely"' flows.cut | wc -l)" = 0
# @TEST-EXEC: test "$(wc -l <flows.cut)" -gt 0
# @TEST-EXEC: test "$(cut -f 2 flows.cut | sort | uniq -d | wc -l)" = 0
# @TEST-EXEC: zeek-cut uid proto msewatch <conn.log | awk '$2 == "tcp" || $2 == "udp"' >conn.cut
# @TEST-EXEC: test "$(awk '$3 == "-"' conn.cut | wc -l)" = 0 || { awk '$3 == "-"' conn.cut; false; }
# @TEST-EXEC: test "$(awk '$3 !~ /^p2p_likely/' conn.cut | wc -l)" -gt 0
# @TEST-EXEC: awk '$3 ~ /^p2p_likely/ {print $1}' conn.cut | sort >conn-p2p.uids
# @TEST-EXEC: cut -f 2 flows.cut | sort >log-p2p.uids
# @TEST-EXEC: cmp conn-p2p.uids log-p2p.uids
# @TEST-EXEC: zeek-cut uid <labels.log | sort -u >labels.uids
# @TEST-EXEC: awk '$3 !~ /^p2p_likely/ {print $1}' conn.cut | sort >conn-other.uids
# @TEST-EXEC: cmp conn-other.uids labels.uids

redef MSEWatch::listen_port = to_port(getenv("WEBSOCKET_PORT"));

# The compact labels as they arrive: one line per uid.
module LabelsSeen;

redef enum Log::ID += { LOG };

type Info: record {
	uid:   string &log;
	label: string &log;
};

event zeek_init()
	{
	Log::create_stream(LOG, Log::Stream($columns=Info, $path="labels"));
	}

event MSEWatch::flow_labels(uids: string, labels: string)
	{
	local u = split_string(uids, / /);
	local l = split_string(labels, / /);
	for ( i in u )
		Log::write(LOG, Info($uid=u[i], $label=l[i]));
	}
