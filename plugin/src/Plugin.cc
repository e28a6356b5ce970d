#include "Plugin.h"

#include <zeek/Conn.h>
#include <zeek/analyzer/Component.h>

#include "Recorder.h"

namespace zeek::plugin::MSEWatch_Evidence {
Plugin plugin;
}

using namespace zeek::plugin::MSEWatch_Evidence;

zeek::plugin::Configuration Plugin::Configure() {
    // Not registered for ports or signatures: HookSetupAnalyzerTree attaches it.
    AddComponent(new zeek::analyzer::Component("MSEWatch_Evidence", Recorder::Instantiate));
    EnableHook(zeek::plugin::HOOK_SETUP_ANALYZER_TREE);

    zeek::plugin::Configuration config;
    config.name = "MSEWatch::Evidence";
    config.description = "msewatch: bounded per-flow evidence recorded natively (docs/zeek.md)";
    config.version.major = 1;
    config.version.minor = 0;
    config.version.patch = 0;
    return config;
}

void Plugin::InitPostScript() {
    zeek::plugin::Plugin::InitPostScript();
    Recorder::Configure();
}

void Plugin::HookSetupAnalyzerTree(zeek::Connection* conn) { Recorder::Attach(conn); }
