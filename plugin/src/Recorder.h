// Bounded per-flow evidence (docs/evidence.md) recorded in C++.
//
// One Recorder is attached to every TCP connection (as a packet child of the TCP session
// adapter, like ConnSize) and to every UDP connection (as a child of the UDP adapter) when
// the package's scripts are loaded. It records exactly what the script fallback in
// zeek-scripts/evidence.zeek records from tcp_packet/udp_contents, with the same budgets
// (read from the same MSEWatch options at each packet), and hands the evidence to the
// scripts by setting connection$msewatch_ev (the packed strings of flow_evidence version 2):
//
//   * budget spent at a packet, or max_age reached (a timer set at the first payload
//     packet): sets msewatch_ev and raises MSEWatch::native_budget_spent(c);
//   * MSEWatch::__take_evidence(c) (the scripts publish at a close or at the end of a
//     trace): sets msewatch_ev now;
//   * the connection's removal (Done(), before connection_state_remove is raised): sets
//     msewatch_ev unless it was taken already.
//
// After that the recorder skips every further packet.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <zeek/analyzer/Analyzer.h>

namespace zeek::plugin::MSEWatch_Evidence {

class Recorder : public zeek::analyzer::Analyzer {
public:
    Recorder(zeek::Connection* conn, bool is_tcp, bool record_orig, bool record_resp);

    static zeek::analyzer::Analyzer* Instantiate(zeek::Connection* conn);

    // Resolves the script-land names the recorder needs; false if the package's scripts
    // (with native recording) are not loaded, and then no recorder is ever attached.
    static bool Configure();
    static bool Active();

    // Attaches a recorder to conn if it is a recorded TCP/UDP connection.
    static void Attach(zeek::Connection* conn);

    // publish_evidence() of evidence.zeek in C++ (MSEWatch::__publish_native): marks the
    // connection published, refreshes its record (unless `ending`), takes the evidence,
    // raises MSEWatch::flow_evidence and runs the MSEWatch::evidence_published hook.
    // `conn` is null once the Connection is gone (bifcl hands a connection argument over as
    // the Connection it came from).
    // Returns false, doing nothing, when the recorder is not active (Configure() failed).
    static bool Publish(const zeek::RecordValPtr& c, zeek::Connection* conn, bool ending);

    // The recorder of conn, if it has one.
    static Recorder* Of(zeek::Connection* conn);

    // Moves the evidence into connection$msewatch_ev (if any payload was recorded) and
    // stops recording. Does nothing the second time.
    void Take();

    void DeliverPacket(int len, const u_char* data, bool is_orig, uint64_t seq, const zeek::IP_Hdr* ip,
                       int caplen) override;
    void FlipRoles() override;
    void Done() override;

private:
    void Start();
    void MaxAgeReached(double t);
    void BudgetSpent();

    bool is_tcp;
    bool record_orig;
    bool record_resp;
    bool started = false;
    bool taken = false;
    uint64_t runs = 0;
    std::vector<int64_t> sizes;
    std::vector<int64_t> times; // ns since the connection's start
    // The heads as flow_evidence version 2 carries them: hex, each followed by ','.
    std::string orig_heads;
    std::string resp_heads;
    uint64_t n_orig_heads = 0;
    uint64_t n_resp_heads = 0;
};

} // namespace zeek::plugin::MSEWatch_Evidence
