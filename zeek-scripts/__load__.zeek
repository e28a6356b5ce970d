##! msewatch: encrypted BitTorrent (MSE/PE) and P2P evidence for a Python
##! bridge over Zeek's WebSocket API, with verdicts logged to msewatch.log,
##! raised as notices and added to conn.log.  See docs/zeek.md.

@load ./main
@load ./delivery
@load ./evidence
@load ./verdicts
@load ./cluster
@load ./persist
@load ./pcap
