##! Pcap mode with a bridge: ``zeek -C -r trace.pcap msewatch msewatch/wait-for-bridge``
##! holds the trace until a bridge subscribed to the evidence topic connects
##! and exits once every flow has its verdict (see pcap.zeek).  Not loaded by
##! default: it changes when Zeek exits.

@load ./main

redef MSEWatch::pcap_wait_for_bridge = T;
redef exit_only_after_terminate = T;
