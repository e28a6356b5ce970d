// See Recorder.h. The recording rules mirror record_payload() in
// zeek-scripts/evidence.zeek line by line: keep the two in step.

#include "Recorder.h"

#include <netinet/udp.h>

#include <algorithm>
#include <charconv>
#include <cmath>

#include <zeek/Conn.h>
#include <zeek/Event.h>
#include <zeek/EventRegistry.h>
#include <zeek/ID.h>
#include <zeek/IP.h>
#include <zeek/NetVar.h>
#include <zeek/RunState.h>
#include <zeek/Timer.h>
#include <zeek/Type.h>
#include <zeek/Val.h>
#include <zeek/Func.h>
#include <zeek/analyzer/Manager.h>
#include <zeek/packet_analysis/protocol/tcp/TCPSessionAdapter.h>

namespace zeek::plugin::MSEWatch_Evidence {

namespace {

// What the recorder needs from script-land, resolved once after the scripts are parsed.
struct ScriptNames {
    bool active = false;
    zeek::Tag tag;
    int ev_field = -1; // connection$msewatch_ev
    zeek::RecordTypePtr ev_type;
    int f_sizes = -1, f_times = -1, f_orig_heads = -1, f_resp_heads = -1, f_bursts = -1;
    zeek::StringValPtr empty; // a packed field with no value
    zeek::EventHandlerPtr budget_spent;
    zeek::detail::IDPtr max_packets, max_bursts, head_bytes, udp_heads, max_age, publish_at_max_age;

    // Publication (Publish()).
    zeek::EventHandlerPtr flow_evidence;
    zeek::FuncPtr published_hook, community_id;
    zeek::detail::IDPtr publish_payloadless, evidence_version;
    int c_done = -1, c_id = -1, c_uid = -1, c_start = -1, c_duration = -1, c_history = -1, c_orig = -1,
        c_resp = -1;
    int e_size = -1, e_num_pkts = -1;
    int id_orig_h = -1, id_orig_p = -1, id_resp_h = -1, id_resp_p = -1;
};

ScriptNames names;

zeek::detail::IDPtr find_option(const char* name) {
    auto id = zeek::detail::global_scope() ? zeek::id::find(name) : nullptr;
    return id && id->GetVal() ? id : nullptr;
}

uint64_t count_of(const zeek::detail::IDPtr& id) { return id->GetVal()->AsCount(); }

// Appends a head as flow_evidence version 2 carries it: lower-case hex, then ','.
void append_head(const u_char* data, int n, std::string& out) {
    static const char digits[] = "0123456789abcdef";
    size_t at = out.size();
    out.resize(at + 2 * n + 1);
    for ( int i = 0; i < n; ++i ) {
        out[at + 2 * i] = digits[data[i] >> 4];
        out[at + 2 * i + 1] = digits[data[i] & 0x0f];
    }
    out[at + 2 * n] = ',';
}

// Appends v in decimal, after a ',' unless out is empty (version 2's integer lists).
void append_int(std::string& out, int64_t v) {
    char buf[24];
    char* p = buf;
    if ( ! out.empty() )
        *p++ = ',';
    p = std::to_chars(p, buf + sizeof(buf), v).ptr;
    out.append(buf, p - buf);
}

} // namespace

bool Recorder::Configure() {
    names = ScriptNames{};

    const auto& conn_type = zeek::id::find_type<zeek::RecordType>("connection");
    int field = conn_type ? conn_type->FieldOffset("msewatch_ev") : -1;
    if ( field < 0 )
        return false; // the package's scripts are not loaded

    auto ev_type = zeek::cast_intrusive<zeek::RecordType>(conn_type->GetFieldType(field));
    auto handler = zeek::event_registry->Lookup("MSEWatch::native_budget_spent");
    if ( ! ev_type || ! handler || ! handler->GetFunc() )
        return false; // the scripts record themselves (no handler for our event)

    names.ev_field = field;
    names.ev_type = ev_type;
    names.f_sizes = ev_type->FieldOffset("sizes");
    names.f_times = ev_type->FieldOffset("times");
    names.f_orig_heads = ev_type->FieldOffset("orig_heads");
    names.f_resp_heads = ev_type->FieldOffset("resp_heads");
    names.f_bursts = ev_type->FieldOffset("bursts");
    if ( names.f_sizes < 0 || names.f_times < 0 || names.f_orig_heads < 0 || names.f_resp_heads < 0 ||
         names.f_bursts < 0 ) {
        zeek::reporter->Error("MSEWatch::Evidence: MSEWatch::Evidence lacks a field the plugin fills");
        return false;
    }
    for ( int f : {names.f_sizes, names.f_times, names.f_orig_heads, names.f_resp_heads, names.f_bursts} ) {
        if ( ev_type->GetFieldType(f)->Tag() != zeek::TYPE_STRING ) {
            zeek::reporter->Error("MSEWatch::Evidence: MSEWatch::Evidence is not the packed (string) one the "
                                  "plugin fills: scripts of another version?");
            return false;
        }
    }
    names.empty = zeek::make_intrusive<zeek::StringVal>("");

    names.max_packets = find_option("MSEWatch::max_packets");
    names.max_bursts = find_option("MSEWatch::max_bursts");
    names.head_bytes = find_option("MSEWatch::head_bytes");
    names.udp_heads = find_option("MSEWatch::udp_heads");
    names.max_age = find_option("MSEWatch::max_age");
    names.publish_at_max_age = find_option("MSEWatch::publish_at_max_age");
    if ( ! names.max_packets || ! names.max_bursts || ! names.head_bytes || ! names.udp_heads ||
         ! names.max_age || ! names.publish_at_max_age ) {
        zeek::reporter->Error("MSEWatch::Evidence: an MSEWatch budget option is missing");
        return false;
    }

    names.budget_spent = handler;

    // What Publish() reads and raises.
    names.flow_evidence = zeek::event_registry->Lookup("MSEWatch::flow_evidence");
    names.published_hook = zeek::id::find_func("MSEWatch::evidence_published");
    names.community_id = zeek::id::find_func("community_id_v1");
    names.publish_payloadless = find_option("MSEWatch::publish_payloadless");
    names.evidence_version = find_option("MSEWatch::evidence_version");
    names.c_done = conn_type->FieldOffset("msewatch_done");
    names.c_id = conn_type->FieldOffset("id");
    names.c_uid = conn_type->FieldOffset("uid");
    names.c_start = conn_type->FieldOffset("start_time");
    names.c_duration = conn_type->FieldOffset("duration");
    names.c_history = conn_type->FieldOffset("history");
    names.c_orig = conn_type->FieldOffset("orig");
    names.c_resp = conn_type->FieldOffset("resp");
    const auto& endpoint = zeek::id::find_type<zeek::RecordType>("endpoint");
    const auto& conn_id = zeek::id::find_type<zeek::RecordType>("conn_id");
    names.e_size = endpoint ? endpoint->FieldOffset("size") : -1;
    names.e_num_pkts = endpoint ? endpoint->FieldOffset("num_pkts") : -1;
    names.id_orig_h = conn_id ? conn_id->FieldOffset("orig_h") : -1;
    names.id_orig_p = conn_id ? conn_id->FieldOffset("orig_p") : -1;
    names.id_resp_h = conn_id ? conn_id->FieldOffset("resp_h") : -1;
    names.id_resp_p = conn_id ? conn_id->FieldOffset("resp_p") : -1;
    if ( ! names.flow_evidence || ! names.published_hook || ! names.community_id || ! names.publish_payloadless ||
         ! names.evidence_version || names.c_done < 0 || names.c_id < 0 || names.c_uid < 0 || names.c_start < 0 ||
         names.c_duration < 0 || names.c_history < 0 || names.c_orig < 0 || names.c_resp < 0 || names.e_size < 0 ||
         names.e_num_pkts < 0 || names.id_orig_h < 0 || names.id_orig_p < 0 || names.id_resp_h < 0 ||
         names.id_resp_p < 0 ) {
        zeek::reporter->Error("MSEWatch::Evidence: a name the native publication needs is missing");
        return false;
    }

    names.tag = zeek::analyzer_mgr->GetComponentTag("MSEWATCH_EVIDENCE");
    names.active = static_cast<bool>(names.tag);
    return names.active;
}

bool Recorder::Active() { return names.active; }

Recorder::Recorder(zeek::Connection* conn, bool arg_is_tcp, bool arg_record_orig, bool arg_record_resp)
    : zeek::analyzer::Analyzer(names.tag, conn),
      is_tcp(arg_is_tcp),
      record_orig(arg_record_orig),
      record_resp(arg_record_resp) {}

zeek::analyzer::Analyzer* Recorder::Instantiate(zeek::Connection* conn) {
    // Only for completeness (the analyzer manager's factory): Attach() is the way in.
    bool tcp = conn->ConnTransport() == TRANSPORT_TCP;
    return new Recorder(conn, tcp, true, true);
}

void Recorder::Attach(zeek::Connection* conn) {
    if ( ! names.active || ! zeek::analyzer_mgr->IsEnabled(names.tag) )
        return;

    auto* adapter = conn->GetSessionAdapter();
    if ( ! adapter )
        return;

    switch ( conn->ConnTransport() ) {
        case TRANSPORT_TCP: {
            // A packet child, like ConnSize: it sees every packet, reassembled or not.
            auto* tcp = static_cast<zeek::packet_analysis::TCP::TCPSessionAdapter*>(adapter);
            auto* r = new Recorder(conn, true, true, true);
            tcp->AddChildPacketAnalyzer(r);
            r->Init();
            break;
        }

        case TRANSPORT_UDP: {
            // The script fallback records the datagrams udp_contents delivers: all of a
            // direction when udp_content_deliver_all_<direction> is set.
            bool orig = zeek::detail::udp_content_deliver_all_orig;
            bool resp = zeek::detail::udp_content_deliver_all_resp;
            if ( orig || resp )
                adapter->AddChildAnalyzer(new Recorder(conn, false, orig, resp));
            break;
        }

        default: break;
    }
}

Recorder* Recorder::Of(zeek::Connection* conn) {
    if ( ! names.active )
        return nullptr;

    return static_cast<Recorder*>(conn->FindAnalyzer(names.tag));
}

void Recorder::Start() {
    started = true;
    sizes.reserve(8);
    times.reserve(8);

    if ( names.publish_at_max_age->GetVal()->AsBool() )
        ADD_ANALYZER_TIMER(&Recorder::MaxAgeReached,
                           zeek::run_state::network_time + names.max_age->GetVal()->AsInterval(), true,
                           zeek::detail::TIMER_SCHEDULE);
}

void Recorder::DeliverPacket(int len, const u_char* data, bool is_orig, uint64_t seq, const zeek::IP_Hdr* ip,
                             int caplen) {
    // len is the captured payload; the recorded size is the headers' payload length (what
    // tcp_packet calls len), whatever the snap length cut: for UDP the smaller of the UDP
    // length field and the IP payload length, minus the UDP header, as the pcap path
    // (sources/pcap.py) takes it. A zero length field (IPv6 jumbogram; TSO zeroes the IP
    // length) leaves the other one, or the captured payload.
    int size = len;
    if ( is_tcp ) {
        if ( ip && ip->TotalLen() != 0 )
            size = static_cast<int>(ip->PayloadLen()) - static_cast<int>(data - ip->Payload());
    }
    else if ( ip && len >= 0 ) {
        const auto* up = reinterpret_cast<const struct udphdr*>(data - sizeof(struct udphdr));
        int hdr = static_cast<int>(sizeof(struct udphdr));
        int wire = -1;
        if ( ip->TotalLen() != 0 )
            wire = static_cast<int>(ip->PayloadLen()) - hdr;
        int ulen = ntohs(up->uh_ulen);
        if ( ulen >= hdr && (wire < 0 || ulen - hdr < wire) )
            wire = ulen - hdr;
        if ( wire >= 0 )
            size = wire;

        // An analyzer before us may have flipped the connection while handling this very
        // datagram (DNS does when the first message is a response); is_orig is then the
        // old direction. The datagram's own source decides. (TCP corrects is_orig for
        // packet children itself.)
        bool from_orig = ip->SrcAddr() == Conn()->OrigAddr() && up->uh_sport == Conn()->OrigPort();
        bool from_resp = ip->SrcAddr() == Conn()->RespAddr() && up->uh_sport == Conn()->RespPort();
        if ( from_orig != from_resp )
            is_orig = from_orig;
    }

    if ( ! is_tcp && ! (is_orig ? record_orig : record_resp) )
        return;
    if ( size <= 0 )
        return;

    if ( ! started )
        Start();

    double age = zeek::run_state::network_time - Conn()->StartTime();

    if ( age > names.max_age->GetVal()->AsInterval() ) {
        BudgetSpent();
        return;
    }

    size_t n = sizes.size();

    if ( n == 0 || (sizes[n - 1] > 0) != is_orig ) {
        // The packet opens a direction run.
        if ( runs >= count_of(names.max_bursts) ) {
            BudgetSpent();
            return;
        }

        ++runs;
    }

    sizes.push_back(is_orig ? size : -static_cast<int64_t>(size));

    auto& n_heads = is_orig ? n_orig_heads : n_resp_heads;
    uint64_t heads_per_direction = is_tcp ? 1 : count_of(names.udp_heads);
    if ( n_heads < heads_per_direction ) {
        uint64_t keep = std::min<uint64_t>(count_of(names.head_bytes), 256);
        // What was captured, up to the datagram's end (a UDP length field shorter than the
        // IP payload ends it, as on the pcap path).
        int n_bytes = static_cast<int>(std::min<uint64_t>(keep, static_cast<uint64_t>(std::max(std::min(len, size), 0))));
        append_head(data, n_bytes, is_orig ? orig_heads : resp_heads);
        ++n_heads;
    }

    // In ns, rounded (the script recorder: double_to_int, i.e. rint).
    times.push_back(static_cast<int64_t>(std::rint(age * 1e9)));

    if ( n + 1 >= count_of(names.max_packets) )
        BudgetSpent();
}

void Recorder::MaxAgeReached(double /* t */) {
    if ( ! taken )
        BudgetSpent();
}

void Recorder::BudgetSpent() {
    Take();

    if ( names.budget_spent )
        EnqueueConnEvent(names.budget_spent, ConnVal());
}

void Recorder::Take() {
    if ( taken )
        return;

    taken = true;
    SetSkip(true);

    if ( ! started )
        return; // no payload: the scripts publish an empty Evidence

    auto ev = zeek::make_intrusive<zeek::RecordVal>(names.ev_type);

    // flow_evidence version 2's strings: sizes, the signed direction runs they form
    // (bursts_of() in the scripts) and times, as decimal integers joined by ','; the heads
    // were built so as they were recorded. One string Val per field, none per element.
    std::string p_sizes, p_bursts, p_times;
    p_sizes.reserve(6 * sizes.size());
    p_bursts.reserve(7 * runs);
    p_times.reserve(10 * times.size());
    int64_t burst = 0;
    for ( auto s : sizes ) {
        append_int(p_sizes, s);
        if ( burst != 0 && (burst > 0) != (s > 0) ) {
            append_int(p_bursts, burst);
            burst = 0;
        }
        burst += s;
    }
    if ( burst != 0 )
        append_int(p_bursts, burst);
    for ( auto t : times )
        append_int(p_times, t);

    ev->Assign(names.f_sizes, zeek::make_intrusive<zeek::StringVal>(p_sizes));
    ev->Assign(names.f_times, zeek::make_intrusive<zeek::StringVal>(p_times));
    ev->Assign(names.f_bursts, zeek::make_intrusive<zeek::StringVal>(p_bursts));
    ev->Assign(names.f_orig_heads, zeek::make_intrusive<zeek::StringVal>(orig_heads));
    ev->Assign(names.f_resp_heads, zeek::make_intrusive<zeek::StringVal>(resp_heads));

    Conn()->GetVal()->Assign(names.ev_field, std::move(ev));

    std::vector<int64_t>().swap(sizes);
    std::vector<int64_t>().swap(times);
    std::string().swap(orig_heads);
    std::string().swap(resp_heads);
}

bool Recorder::Publish(const zeek::RecordValPtr& c, zeek::Connection* conn, bool ending) {
    // Configure() failed (its error says why): none of the names below were resolved.
    if ( ! names.active )
        return false;

    // Mirrors publish_evidence() in evidence.zeek (the script recorder's), step by step.
    c->Assign(names.c_done, zeek::val_mgr->True());

    if ( ! ending && conn && conn->IsInSessionTable() ) {
        // Counters, duration and history as of now (the record handed to an event was
        // filled in when the event was raised); GetVal() refreshes it in place.
        conn->GetVal();

        if ( auto* r = Of(conn) )
            r->Take();
    }

    zeek::RecordValPtr ev;
    if ( c->HasField(names.ev_field) ) {
        ev = c->GetField<zeek::RecordVal>(names.ev_field);
        c->Remove(names.ev_field);
    }
    else {
        // No payload was ever seen.
        if ( ! names.publish_payloadless->GetVal()->AsBool() )
            return true;

        ev = zeek::make_intrusive<zeek::RecordVal>(names.ev_type);
    }

    auto id = c->GetField<zeek::RecordVal>(names.c_id);
    auto resp_p = id->GetField<zeek::PortVal>(names.id_resp_p);
    bool tcp = resp_p->IsTCP();
    const auto* h = c->GetField<zeek::StringVal>(names.c_history)->AsString();
    auto has = [h](char x) { return memchr(h->Bytes(), x, h->Len()) != nullptr; };
    bool handshake = tcp && has('S') && has('h');
    bool closed = tcp && (has('F') || has('f') || has('R') || has('r'));

    auto orig = c->GetField<zeek::RecordVal>(names.c_orig);
    auto resp = c->GetField<zeek::RecordVal>(names.c_resp);
    auto num_pkts = [](const zeek::RecordValPtr& e) {
        return e->HasField(names.e_num_pkts) ? e->GetField(names.e_num_pkts) : zeek::val_mgr->Count(0);
    };

    zeek::Args cid_args{id, zeek::val_mgr->Count(0), zeek::val_mgr->True()}; // seed 0, base64
    auto cid = names.community_id->Invoke(&cid_args);

    auto packed = [&ev](int field) -> zeek::ValPtr {
        if ( ev->HasField(field) )
            return ev->GetField(field);
        return names.empty;
    };

    zeek::Args args;
    args.reserve(21);
    args.emplace_back(names.evidence_version->GetVal());
    args.emplace_back(c->GetField(names.c_uid));
    args.emplace_back(cid ? cid : zeek::make_intrusive<zeek::StringVal>(""));
    args.emplace_back(id->GetField(names.id_orig_h));
    args.emplace_back(id->GetField(names.id_orig_p));
    args.emplace_back(id->GetField(names.id_resp_h));
    args.emplace_back(resp_p);
    args.emplace_back(c->GetField(names.c_start));
    args.emplace_back(packed(names.f_sizes));
    args.emplace_back(packed(names.f_times));
    args.emplace_back(packed(names.f_bursts));
    args.emplace_back(packed(names.f_orig_heads));
    args.emplace_back(packed(names.f_resp_heads));
    args.emplace_back(num_pkts(orig));
    args.emplace_back(num_pkts(resp));
    args.emplace_back(orig->GetField(names.e_size));
    args.emplace_back(resp->GetField(names.e_size));
    args.emplace_back(c->GetField(names.c_duration));
    args.emplace_back(zeek::val_mgr->Bool(handshake));
    args.emplace_back(zeek::val_mgr->Bool(closed));
    args.emplace_back(zeek::val_mgr->True());
    zeek::event_mgr.Enqueue(names.flow_evidence, std::move(args));

    zeek::Args hook_args{c, zeek::val_mgr->Bool(ending)};
    names.published_hook->Invoke(&hook_args);
    return true;
}

void Recorder::FlipRoles() {
    zeek::analyzer::Analyzer::FlipRoles();

    // Keep the signs and heads relative to the new originator (connection_flipped in the
    // script fallback does the same).
    if ( taken )
        return;

    for ( auto& s : sizes )
        s = -s;

    std::swap(orig_heads, resp_heads);
    std::swap(n_orig_heads, n_resp_heads);
    std::swap(record_orig, record_resp);
}

void Recorder::Done() {
    // The connection is being removed: connection_state_remove, raised right after this,
    // publishes what is in connection$msewatch_ev.
    if ( ! taken )
        Take();

    zeek::analyzer::Analyzer::Done();
}

} // namespace zeek::plugin::MSEWatch_Evidence
