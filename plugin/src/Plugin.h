// The msewatch native evidence recorder (docs/zeek.md, "Native recording").
#pragma once

#include <zeek/plugin/Plugin.h>

namespace zeek::plugin::MSEWatch_Evidence {

class Plugin : public zeek::plugin::Plugin {
protected:
    zeek::plugin::Configuration Configure() override;
    void InitPostScript() override;
    void HookSetupAnalyzerTree(zeek::Connection* conn) override;
};

extern Plugin plugin;

} // namespace zeek::plugin::MSEWatch_Evidence
