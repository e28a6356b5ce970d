"""Suricata side of msewatch: the rule pack's build and release checks, dataset feedback."""
