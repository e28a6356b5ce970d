# @TEST-DOC: A TCP connection whose first packet seen is the SYN/ACK is flipped by Zeek at the client's first data packet: every size, burst and head is relative to the flipped roles, that packet's included (Zeek raises its tcp_packet with the old is_orig; the script recorder turns it round, the native one is told by Zeek).
#
# @TEST-EXEC: $PYTHON $SCRIPTS/make_pcap.py --flip flip.pcap
# @TEST-EXEC: zeek -C -r flip.pcap $PACKAGE $SCRIPTS/dump-evidence.zeek >flip.jsonl
# @TEST-EXEC: $PYTHON $SCRIPTS/check_flip.py flip.jsonl

redef MSEWatch::listen = F;
